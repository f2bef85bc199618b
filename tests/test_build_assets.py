"""scripts/build_assets.py's merge of the attention model's outputs (fast: the index table only; the page's
landmarker reading a face as the server does is tests/test_photo_page.py's)."""
from __future__ import annotations

import importlib.util
import pathlib

import numpy as np

_spec = importlib.util.spec_from_file_location(
    "build_assets", pathlib.Path(__file__).resolve().parent.parent / "scripts" / "build_assets.py")
build_assets = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_assets)


def test_the_refined_points_take_their_x_y_from_the_refined_outputs_and_z_from_the_mesh():
    index = build_assets.refined_gather().reshape(478, 3)
    sizes = {"output_mesh_identity": 1404, **{k: 2 * len(v) for k, v in build_assets.REFINED.items()}}
    starts = dict(zip(sizes, np.cumsum([0, *sizes.values()])[:-1]))
    assert (index >= 0).all() and index.max() < sum(sizes.values())
    assert list(index[10]) == [30, 31, 32]                              # the forehead: the mesh's own
    lips = build_assets.REFINED["output_lips"]
    k = lips.index(13)                                                   # the upper lip's middle
    assert list(index[13]) == [starts["output_lips"] + 2 * k, starts["output_lips"] + 2 * k + 1, 13 * 3 + 2]
    k = build_assets.REFINED["output_right_eye"].index(386)
    assert list(index[386, :2]) == [starts["output_right_eye"] + 2 * k, starts["output_right_eye"] + 2 * k + 1]
    assert list(index[468]) == [starts["output_left_iris"], starts["output_left_iris"] + 1, 159 * 3 + 2]
    assert list(index[477, :2]) == [starts["output_right_iris"] + 8, starts["output_right_iris"] + 9]


def test_each_refined_output_names_distinct_points_of_the_mesh():
    for name, points in build_assets.REFINED.items():
        assert len(set(points)) == len(points), name
        assert all(0 <= p < 478 for p in points)
    assert sum(len(v) for v in build_assets.REFINED.values()) * 2 == 160 + 142 + 142 + 10 + 10
