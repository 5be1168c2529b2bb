import pytest
import yaml

from conftest import REPO
from ripik_clf.config import Config, load_config
from ripik_clf.errors import UserError


def test_default_yaml_documents_the_defaults():
    assert load_config(REPO / "configs" / "default.yaml").to_dict() == Config().to_dict()


def test_demo_yaml_is_valid():
    config = load_config(REPO / "configs" / "demo.yaml")
    assert config.augment.size == 64 and config.augment.flips == "none"  # by hand: see there


def test_precedence_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("augment:\n  copies: 3\n  size: 128\n")
    config = load_config(path, {"augment.size": "256", "split.seed": 7})
    assert (config.augment.copies, config.augment.size, config.split.seed) == (3, 256, 7)


def test_strings_from_the_command_line_are_typed():
    config = load_config(
        None, {"augment.flips": "false", "data.path": "null", "split.val_fraction": "0.25"}
    )
    assert config.augment.flips == "none" and config.data.path is None
    old_true = load_config(None, {"augment.flips": True})  # the old boolean, from YAML
    assert old_true.augment.flips == "all"
    assert config.split.val_fraction == 0.25


@pytest.mark.parametrize(
    "text,expected",
    [
        ("original,augmented", ["original", "augmented"]),
        ("[original, augmented]", ["original", "augmented"]),
        ("['original','augmented']", ["original", "augmented"]),
        (" augmented ", ["augmented"]),
    ],
)
def test_lists_from_the_command_line(text, expected):
    """As a user types them: comma-separated, or YAML's own [a, b]; [] empties a list."""
    assert load_config(None, {"train.models": text}).train.models == expected
    assert load_config(None, {"ensemble.members": "[]"}).ensemble.members == []


@pytest.mark.parametrize("text", ["1e-7", "1E-7", "5e-05"])
def test_exponents_without_a_dot_are_numbers(text, tmp_path):
    """YAML 1.1 (PyYAML) reads 1e-7 as a string: from --set and from a file alike."""
    assert load_config(None, {"train.head_lr": text}).train.head_lr == float(text)
    path = tmp_path / "c.yaml"
    path.write_text(f"train:\n  full_lr: {text}\n")
    assert load_config(path).train.full_lr == float(text)


@pytest.mark.parametrize("text", ["nan", "inf", ".inf", "-.inf", ".nan"])
def test_not_a_number_is_refused(text):
    with pytest.raises(UserError, match="train.head_lr"):
        load_config(None, {"train.head_lr": text})


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"augment.copies": 0}, r"augment.copies=0: expected 1..1000"),
        ({"split.val_fraction": 1.5}, r"split.val_fraction=1.5: expected 0 < x < 1"),
        ({"split.folds": 1}, r"split.folds=1: expected 0, or 2 or more"),
        ({"augment.size": "big"}, r"augment.size='big': expected int"),
        ({"augment.colour": 1}, r"unknown config key 'augment.colour'; keys in augment: copies"),
        ({"trian.epochs": 1}, r"unknown config section 'trian'"),
    ],
)
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(UserError, match=message):
        load_config(None, overrides)


def test_bad_files(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("augment: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(UserError, match="is a folder: pass a YAML file"):
        load_config(tmp_path)


def test_a_binary_config_file_is_one_line(tmp_path, capsys):
    import train

    binary = tmp_path / "model.keras"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--config", str(binary), "--phase", "head"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert (
        err.strip() == f"error: config file {binary} is not text (binary content): pass a YAML file"
    )


def test_save_round_trips(tmp_path):
    config = load_config(None, {"augment.copies": 5})
    config.save(tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml").to_dict() == config.to_dict()


def test_renamed_ensemble_keys_are_still_read_with_a_note(capsys):
    config = load_config(None, {"ensemble.adaptive": "auto", "ensemble.weights": "1,2"})
    assert config.ensemble.tta_threshold == "auto"
    assert config.ensemble.member_weights == [1.0, 2.0]
    err = capsys.readouterr().err
    assert "ensemble.adaptive is now ensemble.tta_threshold" in err
    assert "ensemble.weights is now ensemble.member_weights" in err


@pytest.mark.parametrize(
    "key, value",
    [("train.seed", -1), ("split.seed", -5), ("augment.seed", 2**32), ("train.image_size", 0),
     ("train.image_size", -3)],
)  # fmt: skip
def test_seeds_and_sizes_out_of_range_are_one_line(key, value):
    with pytest.raises(UserError, match=r"train\.|split\.|augment\.|image size"):
        load_config(None, {key: value})


def test_a_dataset_of_one_class_is_refused(tmp_path):
    from conftest import make_folder_dataset
    from ripik_clf.data.dataset import load_dataset

    data = make_folder_dataset(tmp_path / "data", {"only": 4})
    config = load_config(None, {"data.path": str(data)})
    with pytest.raises(UserError, match="one class .*'only'.* at least two"):
        load_dataset(config.data)


def test_a_workdir_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "w").write_text("not a folder")
    with pytest.raises(UserError, match="workdir=.*a folder"):
        load_config(None, {"workdir": str(tmp_path / "w")})


def test_a_yaml_document_built_to_expand_is_refused(tmp_path):
    """Nine levels of ten aliases: a few hundred bytes that expand to 10**9 items."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match="uses 80 YAML aliases"):
        load_config(path)
    path.write_text("x" * 1_000_001)
    with pytest.raises(UserError, match="is over 1000 kB"):
        load_config(path)


@pytest.mark.parametrize("body", ["5", "[1, 2]", "auto", "null"])
def test_a_section_that_is_not_a_mapping_says_so(tmp_path, body):
    path = tmp_path / "c.yaml"
    path.write_text(f"train: {body}\n")
    with pytest.raises(UserError, match=r"section 'train' must be a mapping of keys"):
        load_config(path)


@pytest.mark.parametrize("preset", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_every_preset_loads_and_differs_from_the_default_only_where_it_says(preset):
    config = load_config(REPO / "configs" / preset).to_dict()
    default = Config().to_dict()
    written = yaml.safe_load((REPO / "configs" / preset).read_text()) or {}
    for section, values in config.items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            if value != default[section][key]:  # a change the file must name
                assert key in (written.get(section) or {}), f"{section}.{key}"
