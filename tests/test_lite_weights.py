import os
import pickle

import numpy as np
import pytest

from ripik_clf.errors import UserError
from ripik_clf.models.lite_weights import (
    LEGACY_MAGIC,
    LEGACY_PROTOCOL,
    lite_blocks,
    read_legacy_torch,
    round_filters,
    weights_file,
)


@pytest.fixture(scope="module")
def lite0_state():
    return read_legacy_torch(weights_file("efficientnet_lite0"))


def test_reads_every_tensor_with_shapes(lite0_state):
    assert lite0_state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert lite0_state["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert lite0_state["_fc.weight"].shape == (1000, 1280)
    assert lite0_state["_bn0.num_batches_tracked"].dtype == np.int64
    assert not any("_se_" in k for k in lite0_state)  # Lite has no squeeze-excitation
    assert sum(1 for k in lite0_state if k.endswith("_depthwise_conv.weight")) == 16


@pytest.mark.slow
@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_depth_and_width_multipliers_match_the_files(name):
    state = read_legacy_torch(weights_file(name))
    width, depth = {"efficientnet_lite1": (1.0, 1.1), "efficientnet_lite2": (1.1, 1.2)}[name]
    blocks = lite_blocks(width, depth)
    assert sum(1 for k in state if k.endswith("_depthwise_conv.weight")) == len(blocks)
    for i, (kernel, f_in, f_out, expand, _) in enumerate(blocks):
        assert state[f"_blocks.{i}._depthwise_conv.weight"].shape[2:] == (kernel, kernel)
        assert state[f"_blocks.{i}._project_conv.weight"].shape[:2] == (f_out, f_in * expand)


def test_round_filters():
    assert [round_filters(f, 1.1) for f in (16, 24, 40, 80, 112, 192, 320)] == [
        16,
        24,
        48,
        88,
        120,
        208,
        352,
    ]


def _legacy_bytes(payload_object):
    return b"".join(
        pickle.dumps(x, protocol=2)
        for x in (LEGACY_MAGIC, LEGACY_PROTOCOL, {"little_endian": True}, payload_object, [])
    )


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_malicious_pickle_is_refused_without_running(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.pth").write_bytes(_legacy_bytes({"x": _Evil()}))
    with pytest.raises(UserError, match=r"refusing global (posix|os)\.system"):
        read_legacy_torch(tmp_path / "evil.pth")
    assert not (tmp_path / "pwned").exists()


def test_truncated_and_corrupt_files(tmp_path):
    data = weights_file("efficientnet_lite0").read_bytes()
    (tmp_path / "half.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated"):
        read_legacy_torch(tmp_path / "half.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a pickle at all")
    with pytest.raises(UserError, match="cannot read weights file"):
        read_legacy_torch(tmp_path / "junk.pth")
    (tmp_path / "extra.pth").write_bytes(data + b"\0")
    with pytest.raises(UserError, match="unexpected bytes"):
        read_legacy_torch(tmp_path / "extra.pth")
    with pytest.raises(UserError, match="not found"):
        read_legacy_torch(tmp_path / "missing.pth")


# Writes crafted legacy tensor files and reads each back, in a child process: a crafted
# header that made numpy read outside its buffer would kill that process (SIGSEGV), which
# the test sees as its exit status instead of crashing pytest.
_FUZZ = r"""
import json, pickle, random, struct, sys, types
import numpy as np
from ripik_clf.errors import UserError
from ripik_clf.models.lite_weights import LEGACY_MAGIC, LEGACY_PROTOCOL, read_legacy_torch

torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")
def _rebuild_tensor_v2(*args): pass
_rebuild_tensor_v2.__module__ = "torch._utils"
_rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
class FloatStorage: pass
FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
utils._rebuild_tensor_v2, torch.FloatStorage, torch._utils = _rebuild_tensor_v2, FloatStorage, utils
sys.modules.update({"torch": torch, "torch._utils": utils})

class Storage:
    def __init__(self, numel): self.numel = numel
class Tensor:
    def __init__(self, storage, offset, shape, stride):
        self.args = (storage, offset, shape, stride, False, {})
    def __reduce__(self): return (_rebuild_tensor_v2, self.args)
class Writer(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", FloatStorage, "0", "cpu", obj.numel)

def crafted(rng, path):
    numel = 12
    claimed = rng.choice([numel, numel, numel, -1, 11, 10**12])
    storage = Storage(claimed)
    values = [-10**6, -1, 0, 1, 2, 3, 4, 11, 12, 13, 2**31, 2**62, 10**30]
    shape = tuple(rng.choice(values) for _ in range(rng.randint(0, 3)))
    stride = tuple(rng.choice(values) for _ in range(len(shape) + rng.choice([0, 0, 0, 1])))
    offset = rng.choice(values)
    parts = []
    for obj in (LEGACY_MAGIC, LEGACY_PROTOCOL, {"little_endian": True},
                {"w": Tensor(storage, offset, shape, stride)}, ["0"]):
        buffer = __import__("io").BytesIO()
        Writer(buffer, protocol=2).dump(obj)
        parts.append(buffer.getvalue())
    header = bytearray(b"".join(parts))
    for _ in range(rng.choice([0, 0, 0, 1, 3])):  # sometimes flip bytes too
        header[rng.randrange(len(header))] = rng.randrange(256)
    body = struct.pack("<q", numel) + np.arange(numel, dtype="float32").tobytes()
    path.write_bytes(bytes(header) + body)

from pathlib import Path
outcomes = {}
for seed in range(int(sys.argv[2])):
    path = Path(sys.argv[1]) / f"case{seed}.pth"
    crafted(random.Random(seed), path)
    try:
        tensor = read_legacy_torch(path)["w"]
        kind = "read"
        assert set(np.ravel(tensor)) <= set(range(12)), "values from outside the storage"
    except UserError:
        kind = "refused"
    except Exception as err:
        kind = f"{type(err).__name__}: {err}"[:200]
    outcomes[kind] = outcomes.get(kind, 0) + 1
print(json.dumps(outcomes))
"""


def test_crafted_tensor_headers_never_crash_the_reader(tmp_path):
    import json
    import subprocess
    import sys

    from conftest import REPO

    result = subprocess.run(
        [sys.executable, "-c", _FUZZ, str(tmp_path), "1000"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, f"reader crashed ({result.returncode}): {result.stderr[-500:]}"
    outcomes = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(outcomes) <= {"read", "refused"}, outcomes
    assert outcomes.get("read", 0) > 10 and outcomes.get("refused", 0) > 100
