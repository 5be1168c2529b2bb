import os
import pickle

import numpy as np
import pytest

from ripik_clf.errors import UserError
from ripik_clf.lite_weights import (
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
