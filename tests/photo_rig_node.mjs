// The browser's photo-avatar rig (static/js/photoavatar.js) under node, for tests/test_photo_page.py:
//   node photo_rig_node.mjs MESH.json POSES.json  ->  stdout: JSON [[x, y, z, x, y, z, ...], ...], one per pose
import { readFileSync } from "node:fs";
import { Rig } from "../static/js/photoavatar.js";

const [meshPath, posesPath] = process.argv.slice(2);
const rig = new Rig(JSON.parse(readFileSync(meshPath, "utf8")));
const poses = JSON.parse(readFileSync(posesPath, "utf8"));
process.stdout.write(JSON.stringify(poses.map((pose) => Array.from(rig.deform3(pose)))));
