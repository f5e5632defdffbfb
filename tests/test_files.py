"""A file written through replaced_atomically is the whole new file, or the old one untouched."""
import threading

import pytest

from stylenet.files import replaced_atomically


def test_the_new_file_appears_whole_and_no_temporary_is_left(tmp_path):
    target = tmp_path / "deep" / "er" / "model.json"
    with replaced_atomically(target) as tmp:
        assert tmp.parent == target.parent and tmp.name != target.name
        tmp.write_text("half")
        assert not target.exists()  # nothing under the final name while writing
        tmp.write_text("whole")
    assert target.read_text() == "whole"
    assert [p.name for p in target.parent.iterdir()] == ["model.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "model.json"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), replaced_atomically(target) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.json"]


def test_two_writers_never_share_a_temporary(tmp_path):
    target, names, both_open = tmp_path / "cache.bin", [], threading.Barrier(2)

    def write(text: str) -> None:
        with replaced_atomically(target) as tmp:
            names.append(tmp.name)
            tmp.write_text(text)
            both_open.wait(timeout=10)  # both temporaries exist at once

    threads = [threading.Thread(target=write, args=(t,)) for t in ("a" * 1000, "b" * 1000)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(names)) == 2
    assert target.read_text() in ("a" * 1000, "b" * 1000)
