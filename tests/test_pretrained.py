"""Packaged text encoders by name: minilm from its package, mpnet joined from split archive parts."""

from __future__ import annotations

import io
import zipfile

import pytest

from ssu_model.errors import DataError
from ssu_model.text import pretrained


def split_zip(tmp_path, files: dict[str, bytes], n_parts=3):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    data = buf.getvalue()
    step = len(data) // n_parts + 1
    parts = []
    for i in range(n_parts):
        p = tmp_path / f"enc.zip.00{i + 1}"
        p.write_bytes(data[i * step:(i + 1) * step])
        parts.append(p)
    return parts


def test_split_archive_is_joined_and_unpacked_once(tmp_path):
    parts = split_zip(tmp_path, {"enc/config.json": b"{}", "enc/vocab.txt": b"a\nb\n",
                                 "enc/1_Pooling/config.json": b"{}", "enc/desktop.ini": b"x"})
    folder = pretrained.assemble_split_zip(parts, tmp_path / "cache", "enc")
    assert (folder / "vocab.txt").read_bytes() == b"a\nb\n"
    assert (folder / "1_Pooling" / "config.json").is_file() and not (folder / "desktop.ini").exists()
    (folder / "vocab.txt").write_bytes(b"kept")  # a complete folder is reused, not unpacked again
    assert pretrained.assemble_split_zip(parts, tmp_path / "cache", "enc") == folder
    assert (folder / "vocab.txt").read_bytes() == b"kept"
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["enc"]  # no temporary folder left


def test_missing_or_broken_parts_fail_with_one_line(tmp_path, monkeypatch):
    parts = split_zip(tmp_path, {"enc/config.json": b"{}"})
    with pytest.raises(DataError, match="valid zip"):
        pretrained.assemble_split_zip(parts[:-1], tmp_path / "cache", "enc")
    assert not (tmp_path / "cache" / "enc").exists()
    no_config = split_zip(tmp_path, {"enc/vocab.txt": b"a"})
    with pytest.raises(DataError, match="no enc/config.json"):
        pretrained.assemble_split_zip(no_config, tmp_path / "cache2", "enc")
    assert list((tmp_path / "cache2").iterdir()) == []

    def not_installed(name):
        raise pretrained.md.PackageNotFoundError(name)

    monkeypatch.setattr(pretrained.md, "distribution", not_installed)
    with pytest.raises(DataError, match=r"pip install '\.\[mpnet\]'"):
        pretrained.encoder_folder("mpnet", tmp_path)
    with pytest.raises(DataError, match="folder not found"):
        pretrained.encoder_folder(str(tmp_path / "nope"), tmp_path)


def test_minilm_is_the_packaged_folder(tmp_path):
    folder = pretrained.encoder_folder("minilm", tmp_path)
    assert (pretrained.Path(folder) / "config.json").is_file()
