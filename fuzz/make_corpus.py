#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz harnesses: fuzz/corpus/npy/ and
fuzz/corpus/ckpt/, small valid files of every kind the loaders read and a
few broken ones near them.  Python's standard library only (the files follow
numpy's .npy description and the safetensors description), deterministic, so
running it again changes nothing.  Run once and commit the output:

    python3 fuzz/make_corpus.py
"""
import json
import os
import struct

here = os.path.dirname(os.path.abspath(__file__))


def npy(descr, shape, fortran=False, data=None, version=1, pad=64):
    """A .npy file; data defaults to counting bytes of the right length."""
    size = {'f4': 4, 'f8': 8, 'i4': 4, 'i8': 8, 'u1': 1, 'f2': 2, 'b1': 1}[descr[1:]]
    n = 1
    for d in shape:
        n *= d
    if data is None:
        data = bytes(i % 251 for i in range(n * size))
    shape_text = '(' + ', '.join(str(d) for d in shape) + (',)' if len(shape) == 1 else ')')
    header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, shape_text)
    pre = 10 if version == 1 else 12
    total = pre + len(header) + 1
    padded = (total + pad - 1) // pad * pad
    header = header + ' ' * (padded - total) + '\n'
    lenfield = struct.pack('<H', len(header)) if version == 1 else struct.pack('<I', len(header))
    return b'\x93NUMPY' + bytes([version, 0]) + lenfield + header.encode() + data


def st(arrays, meta=None, pad=True):
    """A safetensors file of (name, dtype, shape) with counting bytes."""
    sizes = {'F32': 4, 'F64': 8, 'I32': 4, 'I64': 8, 'U8': 1, 'F16': 2, 'BF16': 2, 'BOOL': 1}
    hdr = {}
    if meta is not None:
        hdr['__metadata__'] = meta
    blob = b''
    for name, dt, shape in arrays:
        n = sizes[dt]
        for d in shape:
            n *= d
        hdr[name] = {'dtype': dt, 'shape': list(shape), 'data_offsets': [len(blob), len(blob) + n]}
        blob += bytes((len(blob) + i) % 251 for i in range(n))
    j = json.dumps(hdr, separators=(',', ':')).encode()
    if pad:
        j += b' ' * (-len(j) % 8)
    return struct.pack('<Q', len(j)) + j + blob


def write(folder, name, data):
    d = os.path.join(here, 'corpus', folder)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


def main():
    for code in ('f4', 'f8', 'i4', 'i8', 'u1'):
        for order in ('<', '>'):
            if code == 'u1' and order == '>':
                continue
            bo = '|' if code == 'u1' else order
            write('npy', '%s%s_2x3.npy' % ('le' if order == '<' else 'be', code), npy(bo + code, (2, 3)))
        write('npy', 'fortran_%s_2x3x2.npy' % code, npy(('|' if code == 'u1' else '<') + code, (2, 3, 2), True))
    write('npy', 'scalar_f8.npy', npy('<f8', ()))
    write('npy', 'empty_i4_0x3.npy', npy('<i4', (0, 3)))
    write('npy', 'eight_dims_u1.npy', npy('|u1', (1, 2, 1, 2, 1, 2, 1, 2)))
    write('npy', 'v2_f4.npy', npy('<f4', (3,), version=2))
    write('npy', 'v3_i8.npy', npy('<i8', (2,), version=3))
    write('npy', 'pad16_f4.npy', npy('<f4', (4,), pad=16))
    write('npy', 'bad_f2.npy', npy('<f2', (2,)))
    write('npy', 'bad_truncated.npy', npy('<f8', (4,))[:-3])
    write('npy', 'bad_terabyte.npy', npy('<f4', (262144, 1048576), data=b'\0' * 16))

    everything = [('f32', 'F32', (2, 3)), ('f64', 'F64', (2,)), ('i32', 'I32', (1, 2)), ('i64', 'I64', (2,)),
                  ('u8', 'U8', (3,))]
    write('ckpt', 'all_dtypes.safetensors', st(everything, {'step': '1200', 'rng': 'philox:42'}))
    write('ckpt', 'one_f32.safetensors', st([('w', 'F32', (2, 2))]))
    write('ckpt', 'scalar_and_empty.safetensors', st([('s', 'F64', ()), ('e', 'I32', (0, 3))]))
    write('ckpt', 'metadata_only.safetensors', st([], {'step': '7'}))
    write('ckpt', 'empty.safetensors', st([]))
    write('ckpt', 'unpadded.safetensors', st([('a', 'U8', (5,))], {'k': 'v'}, pad=False))
    write('ckpt', 'bad_f16.safetensors', st([('h', 'F16', (2,))]))
    write('ckpt', 'bad_truncated.safetensors', st([('w', 'F32', (4,))])[:-2])
    overlap = st([('a', 'F32', (2,)), ('b', 'F32', (2,))]).replace(b'[8,16]', b'[4,12]')
    write('ckpt', 'bad_overlap.safetensors', overlap)
    dup = st([('a', 'U8', (1,)), ('b', 'U8', (1,))]).replace(b'"b"', b'"a"')
    write('ckpt', 'bad_duplicate.safetensors', dup)


if __name__ == '__main__':
    main()
