#!/usr/bin/env python3
"""Regenerate the seed corpus in fuzz/corpus/ from a real chain export.

    P=./target/release/pouwd
    $P start --data-dir /tmp/fz --chain regtest --mine --stop-at-height 12
    $P start --data-dir /tmp/to --chain regtest --stop-at-height 0
    $P start --data-dir /tmp/fz --mine --api 127.0.0.1:0 &
    sleep 2; for a in 1 2 3.5 0.00000001; do $P send --data-dir /tmp/fz --to $($P id --data-dir /tmp/to) --amount $a; done
    sleep 1; kill %1; wait
    $P export-chain --data-dir /tmp/fz --out /tmp/fz.pouw
    python3 fuzz/make_corpus.py /tmp/fz.pouw

Splits the stream (src/node/export.rs) into blocks, cuts each block's header
off by walking the canonical postcard encoding (src/chain/mod.rs), and
writes the real inputs next to truncated and mutated variants of them.
"""

import hashlib
import pathlib
import struct
import sys

CORPUS = pathlib.Path(__file__).resolve().parent / "corpus"
MAGIC = b"POUWEXP\0"


def varint(data, pos):
    """Decode an unsigned LEB128 varint; return (value, next position)."""
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def header_len(block):
    """Length of the header at the start of a block's canonical bytes."""
    pos = 0
    # version, height, parent, timestamp_ms, target, miner, lane, steps,
    # model_hash, ckpt_root, score_ppm, job, job_block, body_hash, tx_root,
    # then the signature.
    for field in "v v 32 v 32 32 v v 32 32 v 32 v 32 32 64".split():
        pos = varint(block, pos)[1] if field == "v" else pos + int(field)
    return pos


def tx_count(block):
    """Number of transactions in a block's body."""
    pos = header_len(block)
    count, pos = varint(block, pos)
    pos += 8 * count
    openings, pos = varint(block, pos)
    for _ in range(openings):
        pos = varint(block, pos)[1]
        count, pos = varint(block, pos)
        pos += 8 * count
        count, pos = varint(block, pos)
        pos += 32 * count
    return varint(block, pos)[0]


def body_end(block, pos):
    """Walk a body; return where it ends, so a bad split shows up here."""
    count, pos = varint(block, pos)
    pos += 8 * count  # params
    openings, pos = varint(block, pos)
    for _ in range(openings):
        pos = varint(block, pos)[1]  # index
        count, pos = varint(block, pos)
        pos += 8 * count
        count, pos = varint(block, pos)
        pos += 32 * count
    txs, pos = varint(block, pos)
    for _ in range(txs):
        # version, chain, from, nonce, fee, kind (Transfer: to, amount), signature
        for field in "v 32 32 v v v 32 v 64".split():
            pos = varint(block, pos)[1] if field == "v" else pos + int(field)
    return pos


def read_stream(data):
    assert data[:8] == MAGIC
    (json_len,) = struct.unpack_from("<I", data, 12)
    pos = 16 + json_len + 32
    preamble = data[:pos]
    blocks = []
    while True:
        (length,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if length == 0:
            (count,) = struct.unpack_from("<Q", data, pos)
            assert count == len(blocks) and pos + 8 == len(data)
            return preamble, blocks
        blocks.append(data[pos : pos + length])
        pos += length


def stream(preamble, blocks, count=None):
    out = bytearray(preamble)
    for block in blocks:
        out += struct.pack("<I", len(block)) + block
    out += struct.pack("<I", 0) + struct.pack("<Q", len(blocks) if count is None else count)
    return bytes(out)


def write(target, name, data):
    directory = CORPUS / target
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(data).hexdigest()[:12]
    (directory / f"{name}-{digest}").write_bytes(data)


def main(path):
    preamble, blocks = read_stream(pathlib.Path(path).read_bytes())
    for target in ("block_decode", "header_decode", "export_stream"):
        # Regression inputs from fixed crashes stay; only seeds are remade.
        for old in (CORPUS / target).glob("*"):
            if not old.name.startswith("regression-"):
                old.unlink()

    # Blocks: a few real ones, the one with the most openings, those with
    # transactions (at most 4), and variants.
    with_txs = [b for b in blocks if tx_count(b) > 0][:4]
    assert with_txs, "the chain should carry some transactions (pouwd send)"
    real = [blocks[0], blocks[1], blocks[len(blocks) // 2], blocks[-1]]
    real.append(max(blocks, key=lambda b: len(b)))
    real.extend(with_txs)
    for block in real:
        assert body_end(block, header_len(block)) == len(block)
        write("block_decode", "valid", block)
    # A block of height below 128, whose height is one varint byte.
    block = blocks[min(len(blocks), 20) - 1]
    hlen = header_len(block)
    write("block_decode", "truncated-header", block[: hlen // 2])
    write("block_decode", "truncated-body", block[:-5])
    write("block_decode", "trailing-byte", block + b"\0")
    # Height as an over-long varint: decodes, but not canonically.
    height, after = varint(block, 1)
    assert height < 128
    write("block_decode", "overlong-height", block[:1] + bytes([height | 0x80, 0]) + block[after:])
    # The params vector claims 2^63 entries.
    count, after = varint(block, hlen)
    huge = bytes([0xFF] * 8 + [0x7F])
    write("block_decode", "huge-params-count", block[:hlen] + huge + block[after:])
    # A NaN parameter with a payload is canonical and must round-trip bit for bit.
    nan = struct.pack("<Q", 0x7FF8_0000_0000_0001)
    write("block_decode", "nan-param", block[:after] + nan + block[after + 8 :])
    # An opening with one proof hash too many (the limit is 64).
    opening = bytes([1]) + bytes([0]) + bytes([65]) + bytes(32 * 65)
    write("block_decode", "too-long-proof", block[:hlen] + bytes([0, 1]) + opening + bytes([0]))
    write("block_decode", "empty", b"")

    # Headers: the real ones cut from the blocks, and variants.
    for block in real[:4]:
        write("header_decode", "valid", block[: header_len(block)])
    block = blocks[-1]
    header = block[: header_len(block)]
    write("header_decode", "truncated", header[:-1])
    write("header_decode", "trailing-byte", header + b"\0")
    write("header_decode", "overlong-version", bytes([header[0] | 0x80, 0]) + header[1:])
    write("header_decode", "version-over-u16", bytes([0xFF, 0xFF, 0x04]) + header[1:])
    write("header_decode", "whole-block", block)
    write("header_decode", "empty", b"")

    # Streams: whole, short, empty, and broken in each part of the format.
    write("export_stream", "valid-20-blocks", stream(preamble, blocks[:20]))
    # Structurally valid (each block decodes), though not a chain.
    write("export_stream", "valid-with-transactions", stream(preamble, blocks[:2] + with_txs))
    write("export_stream", "valid-3-blocks", stream(preamble, blocks[:3]))
    write("export_stream", "valid-no-blocks", stream(preamble, []))
    write("export_stream", "invalid-block-inside", stream(preamble, [blocks[0][:-1]]))
    whole = stream(preamble, blocks[:3])
    write("export_stream", "truncated-record", whole[: len(preamble) + 40])
    write("export_stream", "truncated-end-marker", whole[:-3])
    write("export_stream", "count-mismatch", stream(preamble, blocks[:3], count=4))
    write("export_stream", "trailing-byte", whole + b"\0")
    write("export_stream", "record-too-large", preamble + struct.pack("<I", 0xFFFF_FFFF))
    write("export_stream", "bad-magic", b"POUWEXQ\0" + whole[8:])
    write("export_stream", "version-1", whole[:8] + struct.pack("<I", 1) + whole[12:])
    write("export_stream", "version-3", whole[:8] + struct.pack("<I", 3) + whole[12:])
    write("export_stream", "wrong-genesis", preamble[:-1] + bytes([preamble[-1] ^ 1]))


if __name__ == "__main__":
    main(sys.argv[1])
