import pytest
import torch

from layerwise.errors import CheckpointError, UnknownNameError
from layerwise.registry import Registry
from layerwise.storage import atomic_torch_save, atomic_write_text, safe_torch_load


def test_registry_unknown_name_lists_valid_ones_and_suggests():
    reg = Registry("model")
    reg.register("resnet20")(lambda: 1)
    reg.register("resnet56")(lambda: 2)
    with pytest.raises(UnknownNameError) as err:
        reg.get("resnet21")
    msg = str(err.value)
    assert "unknown model 'resnet21'" in msg
    assert "Did you mean" in msg and "resnet20" in msg
    assert "Valid models: resnet20, resnet56" in msg
    assert reg.names("*56") == ["resnet56"]


def test_registry_rejects_double_registration():
    reg = Registry("dataset")
    reg.register("a")(lambda: 1)
    with pytest.raises(ValueError, match="twice"):
        reg.register("a")(lambda: 2)


def test_atomic_write_replaces_whole_file(tmp_path):
    p = tmp_path / "f.txt"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    assert [x.name for x in tmp_path.iterdir()] == ["f.txt"]


def test_safe_load_round_trip_and_refuses_pickled_objects(tmp_path):
    p = tmp_path / "w.pt"
    atomic_torch_save({"w": torch.arange(3)}, p)
    assert torch.equal(safe_torch_load(p)["w"], torch.arange(3))

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "bad.pt"
    torch.save({"x": Evil()}, bad)
    with pytest.raises(CheckpointError, match="weights-only"):
        safe_torch_load(bad)


def test_safe_load_names_missing_and_truncated_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        safe_torch_load(tmp_path / "nope.pt")
    p = tmp_path / "t.pt"
    atomic_torch_save({"w": torch.randn(100)}, p)
    p.write_bytes(p.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="truncated"):
        safe_torch_load(p)


def test_atomic_write_gives_usual_permissions(tmp_path):
    import os
    umask = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "r.json", "{}")
    finally:
        os.umask(umask)
    assert (p.stat().st_mode & 0o777) == 0o644
