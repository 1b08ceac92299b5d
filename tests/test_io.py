import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from vidcompress.errors import InputError
from vidcompress.io import check_output_path, load_state_dict, save_state_dict


def test_safetensors_round_trip_with_metadata(tmp_path) -> None:
    tensors = {"a.weight": torch.randn(3, 4), "a.bias": torch.randn(3)}
    path = tmp_path / "w.safetensors"
    save_state_dict(tensors, path, {"note": "hello"})
    loaded, metadata = load_state_dict(path)
    assert metadata == {"note": "hello", "format": "pt"}  # format pt, as transformers requires
    assert all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temporary left behind


def test_a_container_is_read_as_its_decoded_weights(tmp_path) -> None:
    # Never the container's raw streams: a caller asking for a state dict gets the weights.
    from vidcompress import QuantizeConfig, encode, finalize_, prune_, quantize_
    from vidcompress.codec import decode
    from vidcompress.codec.manifest import FORMAT_NAME
    from vidcompress.io import CONTAINER_FORMAT

    assert CONTAINER_FORMAT == FORMAT_NAME
    model = torch.nn.Sequential(torch.nn.Linear(20, 10), torch.nn.ReLU(), torch.nn.Linear(10, 3))
    prune_(model, "fc=0.5")
    quantize_(model, QuantizeConfig(bits="fc=4"))
    finalize_(model)
    encode(model, tmp_path / "m.vcz")
    loaded, _ = load_state_dict(tmp_path / "m.vcz")
    expected = decode(tmp_path / "m.vcz")
    assert loaded.keys() == model.state_dict().keys() == expected.keys()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)


def test_tied_tensors_are_written(tmp_path) -> None:
    shared = torch.randn(4, 4)
    save_state_dict({"a": shared, "b": shared}, tmp_path / "w.safetensors")
    loaded, _ = load_state_dict(tmp_path / "w.safetensors")
    assert torch.equal(loaded["a"], loaded["b"])


@pytest.mark.parametrize("wrapper", [None, "state_dict", "model"])
def test_pt_files_and_checkpoint_dicts(tmp_path, wrapper) -> None:
    tensors = {"layer.weight": torch.randn(2, 2)}
    obj = tensors if wrapper is None else {wrapper: tensors, "epoch": 3}
    torch.save(obj, tmp_path / "w.pt")
    loaded, metadata = load_state_dict(tmp_path / "w.pt")
    assert list(loaded) == ["layer.weight"] and metadata == {}


def test_ddp_prefix_is_removed(tmp_path) -> None:
    torch.save({"module.fc.weight": torch.ones(2, 2)}, tmp_path / "w.pth")
    assert list(load_state_dict(tmp_path / "w.pth")[0]) == ["fc.weight"]


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickled_objects_are_refused(tmp_path) -> None:
    path = tmp_path / "evil.pt"
    with open(path, "wb") as stream:
        pickle.dump({"w": Evil()}, stream)
    with pytest.raises(InputError, match="pickled objects are refused"):
        load_state_dict(path)


def test_missing_empty_and_wrong_files(tmp_path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load_state_dict(tmp_path / "nope.safetensors")
    save_file({}, str(tmp_path / "empty.safetensors"))
    with pytest.raises(InputError, match="holds no tensors"):
        load_state_dict(tmp_path / "empty.safetensors")
    (tmp_path / "text.safetensors").write_text("hello world, not weights")
    with pytest.raises(InputError, match="not a readable safetensors file"):
        load_state_dict(tmp_path / "text.safetensors")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(InputError, match="expected a dict of tensors"):
        load_state_dict(tmp_path / "list.pt")


def test_output_checks(tmp_path) -> None:
    source = tmp_path / "in.safetensors"
    save_state_dict({"w": torch.ones(2, 2)}, source)
    with pytest.raises(InputError, match="same file as the input"):
        check_output_path(source, inputs=(source,), force=True)
    with pytest.raises(InputError, match="exists; pass force=True"):
        check_output_path(source, inputs=(), force=False)
    assert check_output_path(source, force=True) == source
    with pytest.raises(InputError, match="output folder does not exist"):
        check_output_path(tmp_path / "no" / "out.safetensors")


def test_failed_write_leaves_nothing(tmp_path) -> None:
    target = tmp_path / "out.safetensors"
    with pytest.raises(InputError):
        save_state_dict({"w": torch.ones(1)}, target, {"bad": 3})  # type: ignore[dict-item]
    assert list(tmp_path.iterdir()) == []


def test_stale_temporaries_of_killed_writers_are_removed(tmp_path) -> None:
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    from vidcompress.io import HOST

    target = tmp_path / "out.safetensors"
    stale = tmp_path / f".out.safetensors.{dead_pid}.abc.tmp"  # the name before the host was in it
    recent = tmp_path / f".out.safetensors.{dead_pid}.def.tmp"
    dead_here = tmp_path / f".out.safetensors.{HOST}.{dead_pid}.mno.tmp"  # this host's dead writer: recent
    live = tmp_path / f".out.safetensors.{HOST}.{os.getpid()}.ghi.tmp"
    elsewhere = tmp_path / f".out.safetensors.otherhost.{dead_pid}.pqr.tmp"  # another host's, recent
    other = tmp_path / f".other.safetensors.{dead_pid}.jkl.tmp"
    for path in (stale, recent, dead_here, live, elsewhere, other):
        path.write_bytes(b"partial")
    hours_ago = os.stat(stale).st_mtime - 7200
    for path in (stale, live, other):
        os.utime(path, (hours_ago, hours_ago))
    save_state_dict({"w": torch.ones(1)}, target)
    # A dead writer of this host goes at once; one without a host in its name, or of another host, only
    # when old (its writer may run on another machine); a live writer's is in use; another name's is
    # not ours to judge.
    kept = [target.name, recent.name, live.name, elsewhere.name, other.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
