"""Decompression bombs for the gateway's tests: files of a few hundred kilobytes whose headers declare
16000x16000 frames, made in milliseconds without ever holding such a frame.

* :func:`write_png_bomb`: a one-colour greyscale PNG, its rows deflated as they are generated (zlib shrinks
  256 MB of zeros to ~250 KB).
* :func:`write_h264_bomb`: a real H.264 MP4 encoded at 16x16, whose sequence parameter set (in the MP4's
  ``avcC``) and sample entry (``avc1``, ``tkhd``) are rewritten to say 16000x16000. A decoder allocates the
  declared frame size, so the file costs whoever decodes it what a real 16000x16000 video would (encoding a
  real one takes 20 s and 3 GB); a reader of headers sees only the declared size.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import av
import numpy as np

BOMB_SIZE = 16000


def write_png_bomb(path: Path, size: int = BOMB_SIZE) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    deflate = zlib.compressobj(9)
    row = bytes(size + 1)  # filter byte + one grey byte per pixel
    data = b"".join(deflate.compress(row) for _ in range(size)) + deflate.flush()
    header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)  # 8-bit greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


# --- H.264 --------------------------------------------------------------------------------------------------
class _Bits:
    def __init__(self, data: bytes) -> None:
        self.bits = "".join(f"{byte:08b}" for byte in data)
        self.at = 0

    def u(self, n: int) -> int:
        value = int(self.bits[self.at:self.at + n], 2)
        self.at += n
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bits[self.at + zeros] == "0":
            zeros += 1
        value = int(self.bits[self.at + zeros:self.at + 2 * zeros + 1], 2) - 1
        self.at += 2 * zeros + 1
        return value


def _ue(value: int) -> str:
    code = f"{value + 1:b}"
    return "0" * (len(code) - 1) + code


def _unescape(nal: bytes) -> bytes:
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def _escape(rbsp: bytes) -> bytes:
    out = bytearray()
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _resize_sps(sps: bytes, width: int, height: int) -> bytes:
    """The same sequence parameter set with ``pic_width_in_mbs`` / ``pic_height_in_map_units`` replaced."""
    bits = _Bits(_unescape(sps[1:]))
    profile = bits.u(8)
    bits.u(16)  # constraint flags, level
    bits.ue()  # seq_parameter_set_id
    if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        if bits.ue() == 3:  # chroma_format_idc
            bits.u(1)
        bits.ue(), bits.ue()  # bit depths
        bits.u(1)  # qpprime_y_zero_transform_bypass
        assert bits.u(1) == 0, "scaling matrices are not handled"
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    assert poc_type in (0, 2), "pic_order_cnt_type 1 is not handled"
    if poc_type == 0:
        bits.ue()
    bits.ue()  # max_num_ref_frames
    bits.u(1)  # gaps_in_frame_num_allowed
    start = bits.at
    bits.ue(), bits.ue()
    rest = bits.bits[bits.at:].rstrip("0")[:-1]  # without the RBSP stop bit and its alignment
    out = bits.bits[:start] + _ue(width // 16 - 1) + _ue(height // 16 - 1) + rest + "1"
    out += "0" * (-len(out) % 8)
    return sps[:1] + _escape(int(out, 2).to_bytes(len(out) // 8, "big"))


_CONTAINERS = {b"moov": 0, b"trak": 0, b"mdia": 0, b"minf": 0, b"stbl": 0, b"stsd": 8, b"avc1": 78}


def _rewrite(data: bytes, width: int, height: int) -> bytes:
    """MP4 boxes with every size-bearing header rewritten (sizes of the enclosing boxes recomputed)."""
    out = b""
    at = 0
    while at < len(data):
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        payload = data[at + 8:at + size]
        if kind in _CONTAINERS:
            skip = _CONTAINERS[kind]
            head = bytearray(payload[:skip])
            if kind == b"avc1":
                head[24:28] = struct.pack(">HH", width, height)
            payload = bytes(head) + _rewrite(payload[skip:], width, height)
        elif kind == b"tkhd":
            payload = payload[:-8] + struct.pack(">II", width << 16, height << 16)
        elif kind == b"avcC":
            sps_length = struct.unpack(">H", payload[6:8])[0]
            sps = _resize_sps(payload[8:8 + sps_length], width, height)
            payload = payload[:6] + struct.pack(">H", len(sps)) + sps + payload[8 + sps_length:]
        out += struct.pack(">I4s", len(payload) + 8, kind) + payload
        at += size
    return out


def write_h264_bomb(path: Path, size: int = BOMB_SIZE, frames: int = 3) -> Path:
    with av.open(str(path), "w") as container:  # the index (moov) goes after the media data (mdat)
        stream = container.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 40 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = path.read_bytes()
    assert data.index(b"mdat") < data.index(b"moov"), "sample offsets would move"
    path.write_bytes(_rewrite(data, size, size))
    return path
