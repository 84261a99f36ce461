"""The error promise, as one assertion shared by the bad-input tables.

A bad input gives exactly one ``gradcam: error: ...`` line on stderr, the documented exit status,
no traceback, and leaves no file behind in the output folder.
"""

import struct
import zlib
from pathlib import Path


def files(folder):
    """Every file under ``folder`` (hidden temporaries included), as sorted relative paths."""
    folder = Path(folder)
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def assert_clean_error(rc, err, status, text, out=None):
    """``rc``/``err``: a run's exit status and stderr; ``text`` must appear in the one line."""
    lines = err.splitlines()
    assert rc == status, (rc, err)
    assert len(lines) == 1 and lines[0].startswith("gradcam: error:"), err
    assert text in lines[0], (text, lines[0])
    assert "Traceback" not in err
    if out is not None:
        assert files(out) == [], files(out)


def png_header(path, w, h):
    """A tiny PNG whose IHDR claims w x h pixels (a decompression-bomb header); returns its path."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))
    return path
