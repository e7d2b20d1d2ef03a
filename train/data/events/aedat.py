"""The jAER / iniVation AEDAT container (versions 2.0 and 3.1) that DVS Gesture and CIFAR10-DVS ship in.

Both start with ASCII header lines beginning with '#' ("#!AER-DAT2.0" / "#!AER-DAT3.1" first).
  2.0: then 8-byte events, big-endian: uint32 address, uint32 timestamp (microseconds).
  3.1: then packets, little-endian: a 28-byte header (int16 eventType, int16 eventSource, int32
       eventSize, int32 eventTSOffset, int32 eventTSOverflow, int32 eventCapacity, int32 eventNumber,
       int32 eventValid) and eventCapacity events of eventSize bytes. Polarity events (type 1) are
       8 bytes: uint32 data, uint32 timestamp; full time = timestamp | eventTSOverflow << 31.
       Packets of other types are skipped.
(The same layouts tonic.io reads with read_aedat_header_from_file / get_aer_events_from_file.)
Returns (address uint32-as-int64, timestamp int64) arrays; the dataset modules decode addresses.
"""
from __future__ import annotations

import struct

import numpy as np

from saf.train.data.base import DatasetError

POLARITY_EVENT = 1
PACKET_HEADER = struct.Struct("<hhiiiiii")


def read_aedat(path: str, want: str) -> tuple:
    """(address, timestamp) of an AEDAT `want` ("2" or "3") file."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror or e})") from None
    pos, version = 0, None
    while pos < len(raw) and raw[pos:pos + 1] == b"#":
        end = raw.find(b"\n", pos)
        end = len(raw) if end < 0 else end + 1
        line = raw[pos:end]
        if line.startswith(b"#!AER-DAT"):
            version = line[9:].strip().decode("ascii", "replace")
        pos = end
    if version is None or not version.startswith(want):
        raise DatasetError(f"{path}: not an AEDAT {want}.x file (header version {version!r})")
    body = raw[pos:]
    if want == "2":
        if len(body) % 8:
            raise DatasetError(f"{path}: {len(body)} data bytes is not a whole number of 8-byte AEDAT 2 events")
        ev = np.frombuffer(body, dtype=">u4").reshape(-1, 2).astype(np.int64)
        return ev[:, 0], ev[:, 1]
    addrs, times, off = [], [], 0
    while off < len(body):
        if off + PACKET_HEADER.size > len(body):
            raise DatasetError(f"{path}: truncated AEDAT 3 packet header at byte {pos + off}")
        etype, _, size, _, overflow, capacity, _, _ = PACKET_HEADER.unpack_from(body, off)
        off += PACKET_HEADER.size
        n = size * capacity
        if size < 1 or off + n > len(body):
            raise DatasetError(f"{path}: truncated AEDAT 3 packet at byte {pos + off}")
        if etype == POLARITY_EVENT:
            if size != 8:
                raise DatasetError(f"{path}: polarity events must be 8 bytes, got {size}")
            ev = np.frombuffer(body[off:off + n], dtype="<u4").reshape(-1, 2).astype(np.int64)
            addrs.append(ev[:, 0])
            times.append(ev[:, 1] | (int(overflow) << 31))
        off += n
    if not addrs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(addrs), np.concatenate(times)


def write_aedat2(addresses, timestamps) -> bytes:
    """An AEDAT 2.0 file's bytes (tests write the published format with it)."""
    ev = np.stack([np.asarray(addresses), np.asarray(timestamps)], axis=1).astype(">u4")
    return b"#!AER-DAT2.0\r\n# This is a raw AE data file created by saf tests\r\n" + ev.tobytes()


def write_aedat3(addresses, timestamps, packet: int = 64) -> bytes:
    """An AEDAT 3.1 file's bytes: polarity packets of up to `packet` events (timestamps < 2^31)."""
    out = [b"#!AER-DAT3.1\r\n#Format: RAW\r\n#!END-HEADER\r\n"]
    a, t = np.asarray(addresses), np.asarray(timestamps)
    for s in range(0, len(a), packet):
        n = min(packet, len(a) - s)
        out.append(PACKET_HEADER.pack(POLARITY_EVENT, 1, 8, 4, 0, n, n, n))
        out.append(np.stack([a[s:s + n], t[s:s + n]], axis=1).astype("<u4").tobytes())
    return b"".join(out)
