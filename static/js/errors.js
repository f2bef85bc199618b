// The one error type of the protocol codecs (protocol.js, posedata.js): `code` is the ERROR code it maps to.
export class ProtocolError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "ProtocolError";
    this.code = code;
  }
}
