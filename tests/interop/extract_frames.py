#!/usr/bin/env python3
"""Splits Kafka traffic recorded in a pcap file into request and response frames.

Pure Python (no scapy, no tshark): reads classic pcap (the format `tcpdump -w` writes),
Ethernet / Linux cooked (SLL, SLL2) / BSD loopback link types, IPv4 and IPv6, reassembles
each TCP connection's two byte streams by sequence number, and cuts each stream into
Kafka frames (int32 big-endian size, then that many bytes).

A connection is "to a broker" when its server side port is one of --ports. Requests are the
client-to-broker frames; their first eight bytes give API key, version and correlation id.
Responses are matched to requests by correlation id on the same connection, which is the only
way to know a response's API key and version (they are not on the wire).

usage:
  extract_frames.py PCAP --ports 1234,5678 --list
  extract_frames.py PCAP --ports 1234,5678 --dump DIR
  extract_frames.py PCAP --ports 1234,5678 [--source NAME --manifest FILE] \
      --pick API[/VERSION]:DIRECTION[:RULE] OUTFILE ...

--list prints one line per frame. --dump writes every frame as
DIR/NNN_cCONN_API_vVER_DIRECTION.bin. --pick (repeatable) writes one frame chosen among those
with that API name (as --list prints it: Produce, Fetch, ApiVersions, ...), optionally that
version, and that direction (request or response). RULE "first" (default) takes the first in
capture order (connection by connection), "largest" the largest (the Fetch response that
carries records, the full Metadata response), "last" the last, "#N" the N-th (from 0), "pair" the other half of the pick before it (the response
to the request just picked, or the request of the response just picked). "{v}" in OUTFILE is replaced by
the frame's version, since the version is whatever the two sides negotiated. The frame body is
written without its 4-byte size prefix. With --manifest, each pick appends a tab-separated
line: file, source, api key, api name, version, direction, correlation id, size, rule.

A pick that matches nothing is an error, as is a stream with a gap or a truncated final frame.
"""

import argparse
import os
import struct
import sys

API_NAMES = {
    0: "Produce",
    1: "Fetch",
    2: "ListOffsets",
    3: "Metadata",
    8: "OffsetCommit",
    9: "OffsetFetch",
    10: "FindCoordinator",
    11: "JoinGroup",
    12: "Heartbeat",
    13: "LeaveGroup",
    14: "SyncGroup",
    15: "DescribeGroups",
    16: "ListGroups",
    17: "SaslHandshake",
    18: "ApiVersions",
    19: "CreateTopics",
    20: "DeleteTopics",
    22: "InitProducerId",
    32: "DescribeConfigs",
    36: "SaslAuthenticate",
    60: "DescribeCluster",
}
MAX_FRAME = 64 * 1024 * 1024


class CaptureError(Exception):
    pass


def read_pcap(path):
    """Yields (linktype, packet bytes) for each record of a classic pcap file."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        raise CaptureError(f"{path}: too short for a pcap header")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    elif magic == b"\x0a\x0d\x0d\x0a":
        raise CaptureError(f"{path}: pcapng is not supported, write classic pcap (tcpdump -w)")
    else:
        raise CaptureError(f"{path}: not a pcap file")
    linktype = struct.unpack(endian + "I", data[20:24])[0] & 0x0FFFFFFF
    pos = 24
    while pos + 16 <= len(data):
        _sec, _frac, incl, orig = struct.unpack(endian + "IIII", data[pos : pos + 16])
        pos += 16
        if incl != orig:
            raise CaptureError(f"packet cut by the snapshot length ({incl} of {orig} bytes)")
        if pos + incl > len(data):
            raise CaptureError("pcap ends inside a packet")
        yield linktype, data[pos : pos + incl]
        pos += incl


def network_layer(linktype, pkt):
    """Returns (ethertype-like protocol, payload) or None for packets that are not IP."""
    if linktype == 1:  # Ethernet
        if len(pkt) < 14:
            return None
        ethertype = struct.unpack(">H", pkt[12:14])[0]
        off = 14
        while ethertype == 0x8100 and len(pkt) >= off + 4:  # VLAN tags
            ethertype = struct.unpack(">H", pkt[off + 2 : off + 4])[0]
            off += 4
        return ethertype, pkt[off:]
    if linktype == 113:  # Linux cooked v1
        return struct.unpack(">H", pkt[14:16])[0], pkt[16:]
    if linktype == 276:  # Linux cooked v2
        return struct.unpack(">H", pkt[0:2])[0], pkt[20:]
    if linktype == 0:  # BSD loopback: host-order address family
        family = struct.unpack("<I", pkt[:4])[0]
        return (0x0800 if family == 2 else 0x86DD), pkt[4:]
    if linktype == 101:  # raw IP
        return (0x0800 if pkt[0] >> 4 == 4 else 0x86DD), pkt
    raise CaptureError(f"unsupported link type {linktype}")


def tcp_segments(path):
    """Yields (src, sport, dst, dport, seq, flags, payload) for each TCP segment."""
    for linktype, pkt in read_pcap(path):
        layer = network_layer(linktype, pkt)
        if layer is None:
            continue
        proto, ip = layer
        if proto == 0x0800:
            if len(ip) < 20 or ip[9] != 6:
                continue
            ihl = (ip[0] & 0x0F) * 4
            total = struct.unpack(">H", ip[2:4])[0]
            src, dst = ip[12:16], ip[16:20]
            tcp = ip[ihl:total]
        elif proto == 0x86DD:
            if len(ip) < 40 or ip[6] != 6:  # no extension headers on loopback
                continue
            plen = struct.unpack(">H", ip[4:6])[0]
            src, dst = ip[8:24], ip[24:40]
            tcp = ip[40 : 40 + plen]
        else:
            continue
        if len(tcp) < 20:
            continue
        sport, dport, seq = struct.unpack(">HHI", tcp[:8])
        doff = (tcp[12] >> 4) * 4
        flags = tcp[13]
        yield src, sport, dst, dport, seq, flags, tcp[doff:]


class Stream:
    """One direction of one TCP connection, reassembled by sequence number."""

    def __init__(self):
        self.isn = None
        self.segments = {}  # relative offset -> payload

    def add(self, seq, flags, payload):
        if flags & 0x02:  # SYN: the data starts one past it
            self.isn = (seq + 1) & 0xFFFFFFFF
            return
        if not payload:
            return
        if self.isn is None:
            raise CaptureError("a connection's data arrived before its SYN (start tcpdump first)")
        rel = (seq - self.isn) & 0xFFFFFFFF
        # Loopback retransmissions repeat earlier bytes; keep the longest segment per offset.
        if len(payload) > len(self.segments.get(rel, b"")):
            self.segments[rel] = payload

    def bytes(self):
        out = bytearray()
        for rel in sorted(self.segments):
            seg = self.segments[rel]
            if rel > len(out):
                raise CaptureError(f"gap in a TCP stream at byte {len(out)} (packets lost?)")
            out += seg[len(out) - rel :]
        return bytes(out)


def split_frames(data, what):
    frames = []
    pos = 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise CaptureError(f"{what}: stream ends inside a size field")
        size = struct.unpack(">i", data[pos : pos + 4])[0]
        if size < 0 or size > MAX_FRAME:
            raise CaptureError(f"{what}: bad frame size {size} at byte {pos}")
        if pos + 4 + size > len(data):
            raise CaptureError(f"{what}: stream ends inside a frame (capture stopped too early?)")
        frames.append(data[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return frames


def extract(path, ports):
    """Returns the frames of all broker connections, in order of connection then position."""
    streams = {}
    order = []
    for src, sport, dst, dport, seq, flags, payload in tcp_segments(path):
        if dport in ports:
            conn, direction = (src, sport, dst, dport), "request"
        elif sport in ports:
            conn, direction = (dst, dport, src, sport), "response"
        else:
            continue
        if conn not in streams:
            streams[conn] = {"request": Stream(), "response": Stream()}
            order.append(conn)
        streams[conn][direction].add(seq, flags, payload)

    frames = []
    for index, conn in enumerate(order):
        what = f"connection {index} (client port {conn[1]}, broker port {conn[3]})"
        requests = split_frames(streams[conn]["request"].bytes(), what + " requests")
        responses = split_frames(streams[conn]["response"].bytes(), what + " responses")
        by_correlation = {}
        for body in requests:
            if len(body) < 8:
                raise CaptureError(f"{what}: request shorter than a header")
            api, version, correlation = struct.unpack(">hhi", body[:8])
            by_correlation[correlation] = (api, version)
            frames.append(
                {
                    "conn": index,
                    "broker_port": conn[3],
                    "direction": "request",
                    "api": api,
                    "version": version,
                    "correlation": correlation,
                    "body": body,
                }
            )
        for body in responses:
            if len(body) < 4:
                raise CaptureError(f"{what}: response shorter than a header")
            correlation = struct.unpack(">i", body[:4])[0]
            if correlation not in by_correlation:
                raise CaptureError(f"{what}: response to unknown correlation id {correlation}")
            api, version = by_correlation[correlation]
            frames.append(
                {
                    "conn": index,
                    "broker_port": conn[3],
                    "direction": "response",
                    "api": api,
                    "version": version,
                    "correlation": correlation,
                    "body": body,
                }
            )
    return frames


def api_name(api):
    return API_NAMES.get(api, f"Api{api}")


def describe(frame):
    return (
        f"conn={frame['conn']} broker_port={frame['broker_port']} {frame['direction']:8} "
        f"{api_name(frame['api'])} v{frame['version']} correlation={frame['correlation']} "
        f"bytes={len(frame['body'])}"
    )


def pick(frames, spec, previous=None):
    parts = spec.split(":")
    if len(parts) not in (2, 3):
        raise CaptureError(f"bad pick {spec!r}: want API[/VERSION]:DIRECTION[:RULE]")
    name, _, version = parts[0].partition("/")
    direction = parts[1]
    rule = parts[2] if len(parts) == 3 else "first"
    matching = [
        f
        for f in frames
        if api_name(f["api"]) == name
        and f["direction"] == direction
        and (not version or f["version"] == int(version))
    ]
    if rule == "pair":
        # The other half of the previous pick: same connection, same correlation id.
        if previous is None:
            raise CaptureError(f"{spec!r}: 'pair' needs a pick before it")
        matching = [
            f
            for f in matching
            if f["conn"] == previous["conn"]
            and f["correlation"] == previous["correlation"]
            and f["direction"] != previous["direction"]
        ]
        rule = "first"
    if not matching:
        raise CaptureError(f"no {parts[0]} {direction} in the capture")
    if rule == "first":
        return matching[0]
    if rule == "last":
        return matching[-1]
    if rule == "largest":
        return max(matching, key=lambda f: len(f["body"]))  # max keeps the first of equals
    if rule.startswith("#") and rule[1:].isdigit():
        if int(rule[1:]) >= len(matching):
            raise CaptureError(f"{spec!r}: only {len(matching)} such frames")
        return matching[int(rule[1:])]
    raise CaptureError(f"bad rule {rule!r} in {spec!r}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pcap")
    parser.add_argument("--ports", required=True, help="broker ports, comma separated")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--dump", metavar="DIR")
    parser.add_argument("--pick", nargs=2, action="append", metavar=("SPEC", "OUTFILE"))
    parser.add_argument("--source", default="unknown", help="who sent the frames (manifest)")
    parser.add_argument("--manifest", help="append one line per pick to this file")
    args = parser.parse_args()
    ports = {int(p) for p in args.ports.split(",") if p}
    try:
        frames = extract(args.pcap, ports)
        if args.list:
            for frame in frames:
                print(describe(frame))
        if args.dump:
            os.makedirs(args.dump, exist_ok=True)
            for n, frame in enumerate(frames):
                name = (
                    f"{n:03}_c{frame['conn']}_{api_name(frame['api'])}"
                    f"_v{frame['version']}_{frame['direction']}.bin"
                )
                with open(os.path.join(args.dump, name), "wb") as f:
                    f.write(frame["body"])
        frame = None
        for spec, outfile in args.pick or []:
            frame = pick(frames, spec, frame)
            outfile = outfile.replace("{v}", str(frame["version"]))
            with open(outfile, "wb") as f:
                f.write(frame["body"])
            print(f"{outfile}: {describe(frame)}")
            if args.manifest:
                with open(args.manifest, "a") as m:
                    fields = [
                        os.path.basename(outfile),
                        args.source,
                        str(frame["api"]),
                        api_name(frame["api"]),
                        str(frame["version"]),
                        frame["direction"],
                        str(frame["correlation"]),
                        str(len(frame["body"])),
                        spec.split(":")[2] if spec.count(":") == 2 else "first",
                    ]
                    m.write("\t".join(fields) + "\n")
    except CaptureError as e:
        print(f"extract_frames: {args.pcap}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
