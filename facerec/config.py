"""params.yaml as typed configuration: one frozen dataclass per section, every value checked.

params.yaml is the only home of values: no field has a default here. Each section is built by
`Section.from_params`, which refuses unknown and missing keys by name; each field's check runs
on construction (so `dataclasses.replace` is checked too) and a refusal names the key, the value
and what is allowed.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from facerec.errors import ParamsError

PARAMS_FILE = Path("params.yaml")  # DVC's default params file, read from the project root


def read_params(path: Path = PARAMS_FILE) -> dict:
    """Parse params.yaml with the YAML 1.2 rules `dvc exp run -S` writes it with (off stays 'off')."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        # DVC itself loads and rewrites params files with ruamel.yaml's safe (YAML 1.2) loader.
        values = YAML(typ="safe").load(text)
    except FileNotFoundError:
        raise ParamsError(f"{path} not found; run the stages from the project root, where it lives") from None
    except YAMLError as error:
        raise ParamsError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(values, dict):
        raise ParamsError(f"{path} must be a mapping of sections (base, download, ...), got {values!r}")
    return values


# ---------------------------------------------------------------- checks of single values


@dataclass(frozen=True)
class Check:
    """What a field accepts: a description for messages and a function that normalises or refuses."""

    allowed: str
    accept: Callable[[Any], Any]  # returns the normalised value; raises ValueError to refuse

    def __call__(self, key: str, value: Any) -> Any:
        try:
            return self.accept(value)
        except ParamsError:
            raise  # a nested section already named its own key
        except (ValueError, TypeError):
            raise ParamsError(f"params.yaml: {key} = {value!r} is not allowed; use {self.allowed}") from None


def _require(condition: bool) -> None:
    if not condition:
        raise ValueError


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def integer(low: int, high: int, meaning: str = "") -> Check:
    """A whole number in [low, high]; `meaning` says what the bounds stand for."""
    def accept(value):
        _require(_is_integer(value) and low <= value <= high)
        return value
    return Check(f"an integer from {low} to {high}{f' ({meaning})' if meaning else ''}", accept)


def number(low: float, high: float, *, low_open: bool = False, high_open: bool = False, meaning: str = "") -> Check:
    """A finite number between low and high; an open end excludes the bound itself; `meaning` explains a value."""
    def accept(value):
        _require(isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value))
        _require((low < value if low_open else low <= value) and (value < high if high_open else value <= high))
        return float(value)
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    return Check(f"a number in {interval}{f' ({meaning})' if meaning else ''}", accept)


def choice(*options: str) -> Check:
    """One of the given words (YAML 1.2: on/off/yes/no are words, not booleans)."""
    def accept(value):
        _require(isinstance(value, str) and value in options)
        return value
    return Check(f"one of {', '.join(options)}", accept)


def boolean() -> Check:
    """true or false."""
    def accept(value):
        _require(isinstance(value, bool))
        return value
    return Check("true or false", accept)


def text(pattern: str = r".*\S.*", allowed: str = "a non-empty text") -> Check:
    """A string matching `pattern` in full."""
    def accept(value):
        _require(isinstance(value, str) and re.fullmatch(pattern, value) is not None)
        return value
    return Check(allowed, accept)


def optional(check: Check, meaning: str) -> Check:
    """Empty (null) or what `check` accepts."""
    return Check(f"{check.allowed}, or empty for {meaning}", lambda value: None if value is None else check.accept(value))


def number_pair(low: float, high: float) -> Check:
    """A list of two numbers in [low, high)."""
    single = number(low, high, high_open=True)
    def accept(value):
        _require(isinstance(value, list | tuple) and len(value) == 2)
        return tuple(single.accept(item) for item in value)
    return Check(f"a list of two numbers in [{low:g}, {high:g}), e.g. [0.2, 0.5]", accept)


def names() -> Check:
    """A list of distinct non-empty strings (may be empty)."""
    def accept(value):
        _require(isinstance(value, list | tuple) and all(isinstance(item, str) and item for item in value))
        _require(len(set(value)) == len(value))
        return tuple(value)
    return Check("a list of distinct names, e.g. [Adriana Lima, Alvaro Morte] (empty = all)", accept)


def subset(*options: str) -> Check:
    """A non-empty list of distinct words, each one of `options`."""
    def accept(value):
        _require(isinstance(value, list | tuple) and len(value) > 0 and len(set(value)) == len(value))
        _require(all(isinstance(item, str) and item in options for item in value))
        return tuple(value)
    return Check(f"a non-empty list of distinct names from [{', '.join(options)}]", accept)


def weights_source() -> Check:
    """imagenet, none, or the path of an existing weights file."""
    def accept(value):
        _require(isinstance(value, str) and (value in ("imagenet", "none") or Path(value).expanduser().is_file()))
        return value
    return Check("imagenet, none, or the path of an existing ResNet50 no-top weights file (.h5)", accept)


def resnet50_layer_names() -> tuple[str, ...]:
    """Names of keras.applications.ResNet50's layers (without top), in order, input layer excluded."""
    layer_names = ["conv1_pad", "conv1_conv", "conv1_bn", "conv1_relu", "pool1_pad", "pool1_pool"]
    for stage, blocks in ((2, 3), (3, 4), (4, 6), (5, 3)):
        for block in range(1, blocks + 1):
            prefix = f"conv{stage}_block{block}"
            layer_names += [f"{prefix}_{part}" for part in ("1_conv", "1_bn", "1_relu", "2_conv", "2_bn", "2_relu")]
            # The first block of a stage has a projection shortcut (0_conv, 0_bn) beside the main path.
            tail = ["0_conv", "3_conv", "0_bn", "3_bn"] if block == 1 else ["3_conv", "3_bn"]
            layer_names += [f"{prefix}_{part}" for part in (*tail, "add", "out")]
    return tuple(layer_names)


def resnet50_layer() -> Check:
    """The name of a layer of the ResNet50 base."""
    known = resnet50_layer_names()
    def accept(value):
        _require(isinstance(value, str) and value in known)
        return value
    return Check("a ResNet50 layer name such as conv5_block1_1_conv (last stage) or conv4_block1_1_conv "
                 "(last two stages); every name is listed by facerec.config.resnet50_layer_names()", accept)


def section(cls: type[Section]) -> Check:
    """A nested section, built (and checked) by its own class."""
    def accept(value):
        return value if isinstance(value, cls) else cls.from_params(value)
    return Check(f"a {cls.KEY} section", accept)


def param(check: Check) -> Any:
    """A dataclass field whose value `check` accepts; it has no default on purpose."""
    return field(metadata={"check": check})


# ---------------------------------------------------------------- sections


@dataclass(frozen=True)
class Section:
    """One params.yaml section; subclasses declare KEY and their fields with `param(...)`."""

    KEY: ClassVar[str]

    def __post_init__(self) -> None:
        for item in fields(self):
            checked = item.metadata["check"](self.key_of(item.name), getattr(self, item.name))
            object.__setattr__(self, item.name, checked)
        self.check_together()

    @classmethod
    def key_of(cls, name: str) -> str:
        """The dotted params key of one field, as `dvc exp run -S` spells it."""
        return f"{cls.KEY}.{name}" if cls.KEY else name

    def check_together(self) -> None:
        """Checks that involve several fields; none unless a section overrides it."""

    def refuse(self, name: str, allowed: str) -> None:
        raise ParamsError(f"params.yaml: {self.key_of(name)} = {getattr(self, name)!r} is not allowed; use {allowed}")

    @classmethod
    def from_params(cls, values: Any):
        """Build the section from its params.yaml mapping, refusing unknown and missing keys."""
        where = cls.KEY or "params.yaml"
        if not isinstance(values, Mapping):
            raise ParamsError(f"params.yaml: {where} = {values!r} is not allowed; use a mapping of keys to values")
        known = [item.name for item in fields(cls)]
        unknown = [str(name) for name in values if name not in known]
        if unknown:
            hints = [f"{cls.key_of(name)} (did you mean {cls.key_of(close[0])}?)"
                     if (close := difflib.get_close_matches(name, known, n=1)) else cls.key_of(name)
                     for name in unknown]
            raise ParamsError(f"params.yaml: unknown key {', '.join(hints)}; {where} knows only: {', '.join(known)}")
        missing = [name for name in known if name not in values]
        if missing:
            raise ParamsError(f"params.yaml: {', '.join(cls.key_of(name) for name in missing)} missing; every key "
                              "needs a value (the project's params.yaml lists them all, with comments)")
        return cls(**{name: values[name] for name in known})


@dataclass(frozen=True)
class BaseConfig(Section):
    """Shared by every stage."""

    KEY = "base"
    seed: int = param(integer(0, 2**32 - 1))  # drives every random choice: split, init, shuffling, samples


SYNTHETIC_MAX_IDENTITIES = 12  # facerec.synthetic has 12 fictional names


@dataclass(frozen=True)
class SyntheticConfig(Section):
    """The demo data drawn by `download.source: synthetic`."""

    KEY = "download.synthetic"
    identities: int = param(integer(2, SYNTHETIC_MAX_IDENTITIES, "the synthetic set has 12 fictional names"))
    images_per_identity: int = param(integer(3, 10_000))
    image_size_px: int = param(integer(16, 1024))


@dataclass(frozen=True)
class DownloadConfig(Section):
    """Where the dataset comes from and which images are usable."""

    KEY = "download"
    source: str = param(text(allowed="kaggle, synthetic, or the path of a dataset archive (.zip, .tar[.gz|.bz2|.xz]) "
                                     "or folder with one sub-folder per identity"))
    kaggle_dataset: str = param(text(r"[\w.-]+/[\w.-]+", "a Kaggle dataset slug owner/name"))
    kaggle_version: int | None = param(optional(integer(1, 1_000_000), "the latest version"))
    max_attempts: int = param(integer(1, 100))  # download attempts before giving up
    retry_wait_s: float = param(number(0, 3600))  # first pause between attempts, seconds
    min_side_px: int = param(integer(1, 10_000))  # shorter side below this → too_small
    max_extracted_gb: float = param(number(0.001, 100_000))  # an archive expanding to more stops (disk guard)
    max_extraction_ratio: float = param(number(1, 1_000_000))  # ... or to more than this × its size (zip bombs)
    synthetic: SyntheticConfig = param(section(SyntheticConfig))

    def check_together(self) -> None:
        if self.source == "synthetic" and self.synthetic.image_size_px < self.min_side_px:
            raise ParamsError(
                f"params.yaml: download.synthetic.image_size_px = {self.synthetic.image_size_px} is below "
                f"download.min_side_px = {self.min_side_px}, so every drawn image would be rejected as too_small; "
                "raise the first or lower the second")


@dataclass(frozen=True)
class FacesConfig(Section):
    """Face detection and alignment: the faces stage, and predict on photos (through the model card)."""

    KEY = "faces"
    detector: str = param(choice("none", "mtcnn"))  # none: later stages read data/raw as it is
    min_confidence: float = param(number(0, 1))  # the kept face's detector confidence; below → low_confidence
    min_face_size_px: int = param(integer(12, 1024))  # smallest face searched for, original pixels
    max_side_px: int = param(integer(64, 8192))  # larger photos are searched downscaled to this longest side
    border_fraction: float = param(number(0, 1))  # black frame around each searched image, × its longest side
    batch_size: int = param(integer(1, 1024))  # images per detector call
    crop_size_px: int = param(integer(16, 1024))  # side of the aligned square crop
    margin_fraction: float = param(number(0, 1))  # context around the landmark template, per side

    @property
    def detects(self) -> bool:
        return self.detector != "none"


HASH_BITS = 256  # facerec.split hashes with a 16 × 16 perceptual hash


@dataclass(frozen=True)
class SplitConfig(Section):
    """Duplicate grouping, identity selection and the stratified split."""

    KEY = "split"
    strategy: str = param(choice("grouped", "random"))  # grouped: duplicate groups never span splits; random: images one by one
    val_fraction: float = param(number(0, 1, low_open=True, high_open=True))  # share of each identity's images
    test_fraction: float = param(number(0, 1, low_open=True, high_open=True))
    min_images_per_identity: int = param(integer(3, 1_000_000))  # distinct images; one per split at least
    near_duplicate_max_distance: int = param(integer(0, HASH_BITS, f"bits that may differ between the {HASH_BITS}-bit perceptual hashes of near duplicates"))  # Hamming bits; <= this → same group
    near_duplicate_min_cosine: float = param(number(0, 1, low_open=True))  # grey thumbnails (best centre-crop pair); >= this → same group
    keypoint_candidate_min_cosine: float = param(number(0, 1, low_open=True))  # thumbnail pairs from here up to near_duplicate_min_cosine get the keypoint check
    keypoint_min_inliers: int = param(integer(0, 10_000, "0 turns the keypoint check off"))  # ORB matches one similarity transform explains; >= this → same group
    burst_max_delta_e: float = param(number(0, 100, meaning="0 turns the burst check off"))  # median CIELAB ΔE after a dense flow, for band pairs the keypoint check left apart; <= this → same group
    keep_conflicts: bool = param(boolean())  # True: keep the majority identity of a conflict group
    identities: tuple[str, ...] = param(names())  # explicit subset; empty = all
    max_identities: int = param(integer(0, 1_000_000))  # first N by name; 0 = all
    unknown_identities: int = param(integer(0, 1_000_000))  # held out of training for open-set evaluation

    def check_together(self) -> None:
        if self.val_fraction + self.test_fraction >= 1:
            self.refuse("test_fraction", f"a number below 1 - split.val_fraction = {1 - self.val_fraction:g}, "
                                         "so train keeps images")
        # With both checks off the bound is unused, so a lower thumbnail threshold alone is fine.
        if ((self.keypoint_min_inliers or self.burst_max_delta_e)
                and self.keypoint_candidate_min_cosine > self.near_duplicate_min_cosine):
            self.refuse("keypoint_candidate_min_cosine", "a cosine at most split.near_duplicate_min_cosine = "
                                                         f"{self.near_duplicate_min_cosine:g} (equal: no candidates), "
                                                         "or split.keypoint_min_inliers = 0 and split.burst_max_delta_e = 0 "
                                                         "to turn the checks off")


@dataclass(frozen=True)
class AugmentConfig(Section):
    """The original ImageDataGenerator family, as Keras layers inside the model."""

    KEY = "train.model.augment"
    rotation_deg: float = param(number(0, 180))  # max rotation either way
    shift_fraction: float = param(number(0, 1))  # width and height shift
    shear_fraction: float = param(number(0, 1))
    zoom_fraction: float = param(number(0, 1, high_open=True))  # 1 would zoom out to nothing
    horizontal_flip: bool = param(boolean())


@dataclass(frozen=True)
class ModelConfig(Section):
    """The classification head and augmentation on top of the ResNet50 base."""

    KEY = "train.model"
    head_units: int = param(integer(1, 65_536))  # Dense units between the two dropouts
    head_dropout: tuple[float, float] = param(number_pair(0, 1))  # after pooling, after Dense
    augment: AugmentConfig = param(section(AugmentConfig))


# auto: float16 on a GPU, else off; on = float16 (its meaning before bfloat16 was offered).
MIXED_PRECISION_SETTINGS = ("auto", "on", "off", "float16", "bfloat16")


@dataclass(frozen=True)
class TrainConfig(Section):
    """The network, both training phases and the runtime settings."""

    KEY = "train"
    image_size: int = param(integer(32, 1024))  # px, square input
    batch_size: int = param(integer(1, 4096))  # global, split evenly over the replicas
    val_batch_size: int = param(integer(1, 4096))  # global; no gradients kept, so larger batches fit
    epochs: int = param(integer(1, 10_000))  # phase 1: new head on the frozen base
    learning_rate: float = param(number(0, 1, low_open=True))  # Adamax, phase 1
    weights: str = param(weights_source())
    freeze_base: bool = param(boolean())
    fine_tune_epochs: int = param(integer(0, 10_000))  # phase 2; 0 = single phase
    fine_tune_learning_rate: float = param(number(0, 1, low_open=True))
    fine_tune_from: str = param(resnet50_layer())  # first base layer unfrozen in phase 2
    label_smoothing: float = param(number(0, 0.5))
    weight_decay: float = param(number(0, 1))  # decoupled decay of kernels; 0 = off
    class_weights: str = param(choice("none", "balanced"))
    lr_factor: float = param(number(0, 1, low_open=True, high_open=True))  # ReduceLROnPlateau factor
    lr_patience: int = param(integer(0, 1000))  # epochs
    min_learning_rate: float = param(number(0, 1))
    early_stopping_patience: int = param(integer(0, 1000))  # epochs per phase; 0 = off
    mixed_precision: str = param(choice(*MIXED_PRECISION_SETTINGS))
    jit_compile: bool = param(boolean())  # XLA; facerec.training reports (and refuses) a step it cannot compile
    steps_per_execution: int = param(integer(1, 10_000))  # train steps per call from Python; an epoch's count is cut to a divisor
    deterministic: bool = param(boolean())
    cache: str = param(choice("auto", "disk", "memory", "none"))  # auto: memory if it fits with room, else disk
    cache_shards: int = param(integer(1, 256))  # disk cache files, read back in parallel
    backup_every_epochs: int = param(integer(1, 10_000))  # a killed run redoes at most this - 1 epochs
    model: ModelConfig = param(section(ModelConfig))

    def check_together(self) -> None:
        if self.jit_compile and self.deterministic:
            # Keras turns XLA off under op determinism (not every XLA kernel has a deterministic form).
            self.refuse("jit_compile", "false with train.deterministic = true (Keras runs without XLA under op "
                                       "determinism), or set train.deterministic = false to compile with XLA")


OPEN_SET_SCORES = ("max_softmax", "max_logit")


@dataclass(frozen=True)
class EvaluateConfig(Section):
    """Test metrics, figures and the unknown-face threshold."""

    KEY = "evaluate"
    top_k: int = param(integer(1, 1000))
    batch_size: int = param(integer(1, 4096))
    known_acceptance_rate: float = param(number(0.01, 1))  # share of known val faces the threshold accepts
    open_set_score: str = param(choice(*OPEN_SET_SCORES))
    grid_images: int = param(integer(1, 200))  # images per grid figure
    enrol_images: int = param(integer(1, 1000))  # photos per held-out identity enrolled for the enrolment metric


EXPORT_FORMATS = ("saved_model", "tflite", "onnx")
TFLITE_QUANTISATIONS = ("dynamic_range", "float16", "none")


@dataclass(frozen=True)
class ExportConfig(Section):
    """Exported formats, TFLite quantisation and the speed measurement (docs/export.md)."""

    KEY = "export"
    formats: tuple[str, ...] = param(subset(*EXPORT_FORMATS))  # each reloaded and checked against Keras
    tflite_quantization: str = param(choice(*TFLITE_QUANTISATIONS))
    timing_images: int = param(integer(1, 10000))  # test images timed one at a time, and in batches
    throughput_batch_size: int = param(integer(1, 1024))  # batch size of the images/s figure


@dataclass(frozen=True)
class Params(Section):
    """The whole of params.yaml."""

    KEY = ""
    base: BaseConfig = param(section(BaseConfig))
    download: DownloadConfig = param(section(DownloadConfig))
    faces: FacesConfig = param(section(FacesConfig))
    split: SplitConfig = param(section(SplitConfig))
    train: TrainConfig = param(section(TrainConfig))
    evaluate: EvaluateConfig = param(section(EvaluateConfig))
    export: ExportConfig = param(section(ExportConfig))


def load_config(path: Path = PARAMS_FILE) -> Params:
    """Read and check all of params.yaml, so a bad value anywhere stops `dvc repro` at its first stage."""
    return Params.from_params(read_params(path))


def as_plain_dict(config: Section) -> dict:
    """The section as JSON-ready lists and dicts (for model cards, reports and run identities)."""
    return json.loads(json.dumps(asdict(config)))
