from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    DTYPE_FLOAT32: _ClassVar[DType]
    DTYPE_FLOAT16: _ClassVar[DType]
    DTYPE_FLOAT64: _ClassVar[DType]
    DTYPE_UINT8: _ClassVar[DType]
    DTYPE_INT32: _ClassVar[DType]
    DTYPE_INT64: _ClassVar[DType]

class GridCombine(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GRID_COMBINE_UNSPECIFIED: _ClassVar[GridCombine]
    GRID_COMBINE_SUM: _ClassVar[GridCombine]
    GRID_COMBINE_CONCAT: _ClassVar[GridCombine]

class VqadForward(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VQAD_FORWARD_UNSPECIFIED: _ClassVar[VqadForward]
    VQAD_FORWARD_SOFT: _ClassVar[VqadForward]
    VQAD_FORWARD_HARD: _ClassVar[VqadForward]

class Precision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRECISION_UNSPECIFIED: _ClassVar[Precision]
    PRECISION_FP32: _ClassVar[Precision]
    PRECISION_FP16: _ClassVar[Precision]
    PRECISION_FIXED16: _ClassVar[Precision]
    PRECISION_UINT8: _ClassVar[Precision]

class Entropy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENTROPY_UNSPECIFIED: _ClassVar[Entropy]
    ENTROPY_ZSTD: _ClassVar[Entropy]
    ENTROPY_NONE: _ClassVar[Entropy]

class Importance(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMPORTANCE_UNSPECIFIED: _ClassVar[Importance]
    IMPORTANCE_VIEWS: _ClassVar[Importance]
    IMPORTANCE_NONE: _ClassVar[Importance]

class SplatInit(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SPLAT_INIT_UNSPECIFIED: _ClassVar[SplatInit]
    SPLAT_INIT_AUTO: _ClassVar[SplatInit]
    SPLAT_INIT_POINTS: _ClassVar[SplatInit]
    SPLAT_INIT_RANDOM: _ClassVar[SplatInit]
    SPLAT_INIT_OBJECT: _ClassVar[SplatInit]
    SPLAT_INIT_CAMERA_SPREAD: _ClassVar[SplatInit]

class TrainSchedule(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRAIN_SCHEDULE_UNSPECIFIED: _ClassVar[TrainSchedule]
    TRAIN_SCHEDULE_FULL: _ClassVar[TrainSchedule]
    TRAIN_SCHEDULE_FAST: _ClassVar[TrainSchedule]

class QatMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QAT_MODE_UNSPECIFIED: _ClassVar[QatMode]
    QAT_MODE_COMPACT3D: _ClassVar[QatMode]
    QAT_MODE_FINETUNE: _ClassVar[QatMode]

class DensifyStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DENSIFY_STRATEGY_UNSPECIFIED: _ClassVar[DensifyStrategy]
    DENSIFY_STRATEGY_DEFAULT: _ClassVar[DensifyStrategy]
    DENSIFY_STRATEGY_MCMC: _ClassVar[DensifyStrategy]
    DENSIFY_STRATEGY_NONE: _ClassVar[DensifyStrategy]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLING: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]

class JobKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_KIND_UNSPECIFIED: _ClassVar[JobKind]
    JOB_KIND_QUANTIZE: _ClassVar[JobKind]
    JOB_KIND_EXPORT: _ClassVar[JobKind]
    JOB_KIND_RENDER: _ClassVar[JobKind]
    JOB_KIND_TRAIN_SPLATS: _ClassVar[JobKind]
    JOB_KIND_TRAIN_FIELD: _ClassVar[JobKind]
    JOB_KIND_BUILD_FIELD: _ClassVar[JobKind]

class FieldQuantizeMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FIELD_QUANTIZE_METHOD_UNSPECIFIED: _ClassVar[FieldQuantizeMethod]
    FIELD_QUANTIZE_METHOD_KMVQ: _ClassVar[FieldQuantizeMethod]
    FIELD_QUANTIZE_METHOD_LRA: _ClassVar[FieldQuantizeMethod]

class ExportFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_FORMAT_UNSPECIFIED: _ClassVar[ExportFormat]
    EXPORT_FORMAT_PLY: _ClassVar[ExportFormat]
    EXPORT_FORMAT_SPLAT: _ClassVar[ExportFormat]
    EXPORT_FORMAT_SPZ: _ClassVar[ExportFormat]
    EXPORT_FORMAT_VQP: _ClassVar[ExportFormat]
    EXPORT_FORMAT_SOG: _ClassVar[ExportFormat]
    EXPORT_FORMAT_COMPRESSED_PLY: _ClassVar[ExportFormat]

class SpzAxes(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SPZ_AXES_UNSPECIFIED: _ClassVar[SpzAxes]
    SPZ_AXES_PLY: _ClassVar[SpzAxes]
    SPZ_AXES_RUB: _ClassVar[SpzAxes]

class ImageEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_ENCODING_UNSPECIFIED: _ClassVar[ImageEncoding]
    IMAGE_ENCODING_PNG: _ClassVar[ImageEncoding]
    IMAGE_ENCODING_FLOAT32: _ClassVar[ImageEncoding]
DTYPE_UNSPECIFIED: DType
DTYPE_FLOAT32: DType
DTYPE_FLOAT16: DType
DTYPE_FLOAT64: DType
DTYPE_UINT8: DType
DTYPE_INT32: DType
DTYPE_INT64: DType
GRID_COMBINE_UNSPECIFIED: GridCombine
GRID_COMBINE_SUM: GridCombine
GRID_COMBINE_CONCAT: GridCombine
VQAD_FORWARD_UNSPECIFIED: VqadForward
VQAD_FORWARD_SOFT: VqadForward
VQAD_FORWARD_HARD: VqadForward
PRECISION_UNSPECIFIED: Precision
PRECISION_FP32: Precision
PRECISION_FP16: Precision
PRECISION_FIXED16: Precision
PRECISION_UINT8: Precision
ENTROPY_UNSPECIFIED: Entropy
ENTROPY_ZSTD: Entropy
ENTROPY_NONE: Entropy
IMPORTANCE_UNSPECIFIED: Importance
IMPORTANCE_VIEWS: Importance
IMPORTANCE_NONE: Importance
SPLAT_INIT_UNSPECIFIED: SplatInit
SPLAT_INIT_AUTO: SplatInit
SPLAT_INIT_POINTS: SplatInit
SPLAT_INIT_RANDOM: SplatInit
SPLAT_INIT_OBJECT: SplatInit
SPLAT_INIT_CAMERA_SPREAD: SplatInit
TRAIN_SCHEDULE_UNSPECIFIED: TrainSchedule
TRAIN_SCHEDULE_FULL: TrainSchedule
TRAIN_SCHEDULE_FAST: TrainSchedule
QAT_MODE_UNSPECIFIED: QatMode
QAT_MODE_COMPACT3D: QatMode
QAT_MODE_FINETUNE: QatMode
DENSIFY_STRATEGY_UNSPECIFIED: DensifyStrategy
DENSIFY_STRATEGY_DEFAULT: DensifyStrategy
DENSIFY_STRATEGY_MCMC: DensifyStrategy
DENSIFY_STRATEGY_NONE: DensifyStrategy
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLING: JobState
JOB_STATE_CANCELLED: JobState
JOB_KIND_UNSPECIFIED: JobKind
JOB_KIND_QUANTIZE: JobKind
JOB_KIND_EXPORT: JobKind
JOB_KIND_RENDER: JobKind
JOB_KIND_TRAIN_SPLATS: JobKind
JOB_KIND_TRAIN_FIELD: JobKind
JOB_KIND_BUILD_FIELD: JobKind
FIELD_QUANTIZE_METHOD_UNSPECIFIED: FieldQuantizeMethod
FIELD_QUANTIZE_METHOD_KMVQ: FieldQuantizeMethod
FIELD_QUANTIZE_METHOD_LRA: FieldQuantizeMethod
EXPORT_FORMAT_UNSPECIFIED: ExportFormat
EXPORT_FORMAT_PLY: ExportFormat
EXPORT_FORMAT_SPLAT: ExportFormat
EXPORT_FORMAT_SPZ: ExportFormat
EXPORT_FORMAT_VQP: ExportFormat
EXPORT_FORMAT_SOG: ExportFormat
EXPORT_FORMAT_COMPRESSED_PLY: ExportFormat
SPZ_AXES_UNSPECIFIED: SpzAxes
SPZ_AXES_PLY: SpzAxes
SPZ_AXES_RUB: SpzAxes
IMAGE_ENCODING_UNSPECIFIED: ImageEncoding
IMAGE_ENCODING_PNG: ImageEncoding
IMAGE_ENCODING_FLOAT32: ImageEncoding

class Tensor(_message.Message):
    __slots__ = ("data", "shape", "dtype")
    DATA_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: DType
    def __init__(self, data: _Optional[bytes] = ..., shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[_Union[DType, str]] = ...) -> None: ...

class GaussianSplats(_message.Message):
    __slots__ = ("means", "quats", "scales", "opacities", "sh0", "shN", "sh_degree")
    MEANS_FIELD_NUMBER: _ClassVar[int]
    QUATS_FIELD_NUMBER: _ClassVar[int]
    SCALES_FIELD_NUMBER: _ClassVar[int]
    OPACITIES_FIELD_NUMBER: _ClassVar[int]
    SH0_FIELD_NUMBER: _ClassVar[int]
    SHN_FIELD_NUMBER: _ClassVar[int]
    SH_DEGREE_FIELD_NUMBER: _ClassVar[int]
    means: Tensor
    quats: Tensor
    scales: Tensor
    opacities: Tensor
    sh0: Tensor
    shN: Tensor
    sh_degree: int
    def __init__(self, means: _Optional[_Union[Tensor, _Mapping]] = ..., quats: _Optional[_Union[Tensor, _Mapping]] = ..., scales: _Optional[_Union[Tensor, _Mapping]] = ..., opacities: _Optional[_Union[Tensor, _Mapping]] = ..., sh0: _Optional[_Union[Tensor, _Mapping]] = ..., shN: _Optional[_Union[Tensor, _Mapping]] = ..., sh_degree: _Optional[int] = ...) -> None: ...

class DenseGridConfig(_message.Message):
    __slots__ = ("levels", "base_resolution", "max_resolution", "features", "combine", "init_std")
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    BASE_RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    MAX_RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    COMBINE_FIELD_NUMBER: _ClassVar[int]
    INIT_STD_FIELD_NUMBER: _ClassVar[int]
    levels: int
    base_resolution: int
    max_resolution: int
    features: int
    combine: GridCombine
    init_std: float
    def __init__(self, levels: _Optional[int] = ..., base_resolution: _Optional[int] = ..., max_resolution: _Optional[int] = ..., features: _Optional[int] = ..., combine: _Optional[_Union[GridCombine, str]] = ..., init_std: _Optional[float] = ...) -> None: ...

class VqadGridConfig(_message.Message):
    __slots__ = ("levels", "base_resolution", "max_resolution", "features", "bits", "combine", "forward", "anneal_hard_fraction", "init_std", "sparse", "sparse_min_resolution", "candidates")
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    BASE_RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    MAX_RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    BITS_FIELD_NUMBER: _ClassVar[int]
    COMBINE_FIELD_NUMBER: _ClassVar[int]
    FORWARD_FIELD_NUMBER: _ClassVar[int]
    ANNEAL_HARD_FRACTION_FIELD_NUMBER: _ClassVar[int]
    INIT_STD_FIELD_NUMBER: _ClassVar[int]
    SPARSE_FIELD_NUMBER: _ClassVar[int]
    SPARSE_MIN_RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    levels: int
    base_resolution: int
    max_resolution: int
    features: int
    bits: int
    combine: GridCombine
    forward: VqadForward
    anneal_hard_fraction: float
    init_std: float
    sparse: bool
    sparse_min_resolution: int
    candidates: int
    def __init__(self, levels: _Optional[int] = ..., base_resolution: _Optional[int] = ..., max_resolution: _Optional[int] = ..., features: _Optional[int] = ..., bits: _Optional[int] = ..., combine: _Optional[_Union[GridCombine, str]] = ..., forward: _Optional[_Union[VqadForward, str]] = ..., anneal_hard_fraction: _Optional[float] = ..., init_std: _Optional[float] = ..., sparse: _Optional[bool] = ..., sparse_min_resolution: _Optional[int] = ..., candidates: _Optional[int] = ...) -> None: ...

class HashGridConfig(_message.Message):
    __slots__ = ("levels", "base_resolution", "max_resolution", "features", "log2_table_size", "combine", "init_std")
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    BASE_RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    MAX_RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    LOG2_TABLE_SIZE_FIELD_NUMBER: _ClassVar[int]
    COMBINE_FIELD_NUMBER: _ClassVar[int]
    INIT_STD_FIELD_NUMBER: _ClassVar[int]
    levels: int
    base_resolution: int
    max_resolution: int
    features: int
    log2_table_size: int
    combine: GridCombine
    init_std: float
    def __init__(self, levels: _Optional[int] = ..., base_resolution: _Optional[int] = ..., max_resolution: _Optional[int] = ..., features: _Optional[int] = ..., log2_table_size: _Optional[int] = ..., combine: _Optional[_Union[GridCombine, str]] = ..., init_std: _Optional[float] = ...) -> None: ...

class DecoderConfig(_message.Message):
    __slots__ = ("hidden", "layers", "color_layers", "geo_features", "dir_degree")
    HIDDEN_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    COLOR_LAYERS_FIELD_NUMBER: _ClassVar[int]
    GEO_FEATURES_FIELD_NUMBER: _ClassVar[int]
    DIR_DEGREE_FIELD_NUMBER: _ClassVar[int]
    hidden: int
    layers: int
    color_layers: int
    geo_features: int
    dir_degree: int
    def __init__(self, hidden: _Optional[int] = ..., layers: _Optional[int] = ..., color_layers: _Optional[int] = ..., geo_features: _Optional[int] = ..., dir_degree: _Optional[int] = ...) -> None: ...

class FieldConfig(_message.Message):
    __slots__ = ("vqad", "dense", "hash", "decoder")
    VQAD_FIELD_NUMBER: _ClassVar[int]
    DENSE_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    DECODER_FIELD_NUMBER: _ClassVar[int]
    vqad: VqadGridConfig
    dense: DenseGridConfig
    hash: HashGridConfig
    decoder: DecoderConfig
    def __init__(self, vqad: _Optional[_Union[VqadGridConfig, _Mapping]] = ..., dense: _Optional[_Union[DenseGridConfig, _Mapping]] = ..., hash: _Optional[_Union[HashGridConfig, _Mapping]] = ..., decoder: _Optional[_Union[DecoderConfig, _Mapping]] = ...) -> None: ...

class NeuralField(_message.Message):
    __slots__ = ("config", "tensors", "artifact")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    config: FieldConfig
    tensors: FieldTensors
    artifact: ArtifactRef
    def __init__(self, config: _Optional[_Union[FieldConfig, _Mapping]] = ..., tensors: _Optional[_Union[FieldTensors, _Mapping]] = ..., artifact: _Optional[_Union[ArtifactRef, _Mapping]] = ...) -> None: ...

class FieldTensors(_message.Message):
    __slots__ = ("tensors",)
    class TensorsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Tensor
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    tensors: _containers.MessageMap[str, Tensor]
    def __init__(self, tensors: _Optional[_Mapping[str, Tensor]] = ...) -> None: ...

class Camera(_message.Message):
    __slots__ = ("viewmat", "K", "width", "height", "name")
    VIEWMAT_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    viewmat: _containers.RepeatedScalarFieldContainer[float]
    K: _containers.RepeatedScalarFieldContainer[float]
    width: int
    height: int
    name: str
    def __init__(self, viewmat: _Optional[_Iterable[float]] = ..., K: _Optional[_Iterable[float]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., name: _Optional[str] = ...) -> None: ...

class Color(_message.Message):
    __slots__ = ("r", "g", "b")
    R_FIELD_NUMBER: _ClassVar[int]
    G_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    r: float
    g: float
    b: float
    def __init__(self, r: _Optional[float] = ..., g: _Optional[float] = ..., b: _Optional[float] = ...) -> None: ...

class QuantizeConfig(_message.Message):
    __slots__ = ("preset", "dc_codebook", "sh_codebook", "scale_codebook", "rot_codebook", "kmeans_iters", "seed", "position_precision", "opacity_precision", "entropy", "sh_degree", "strict", "importance", "position_bits", "prune")
    PRESET_FIELD_NUMBER: _ClassVar[int]
    DC_CODEBOOK_FIELD_NUMBER: _ClassVar[int]
    SH_CODEBOOK_FIELD_NUMBER: _ClassVar[int]
    SCALE_CODEBOOK_FIELD_NUMBER: _ClassVar[int]
    ROT_CODEBOOK_FIELD_NUMBER: _ClassVar[int]
    KMEANS_ITERS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    POSITION_PRECISION_FIELD_NUMBER: _ClassVar[int]
    OPACITY_PRECISION_FIELD_NUMBER: _ClassVar[int]
    ENTROPY_FIELD_NUMBER: _ClassVar[int]
    SH_DEGREE_FIELD_NUMBER: _ClassVar[int]
    STRICT_FIELD_NUMBER: _ClassVar[int]
    IMPORTANCE_FIELD_NUMBER: _ClassVar[int]
    POSITION_BITS_FIELD_NUMBER: _ClassVar[int]
    PRUNE_FIELD_NUMBER: _ClassVar[int]
    preset: str
    dc_codebook: int
    sh_codebook: int
    scale_codebook: int
    rot_codebook: int
    kmeans_iters: int
    seed: int
    position_precision: Precision
    opacity_precision: Precision
    entropy: Entropy
    sh_degree: int
    strict: bool
    importance: Importance
    position_bits: int
    prune: float
    def __init__(self, preset: _Optional[str] = ..., dc_codebook: _Optional[int] = ..., sh_codebook: _Optional[int] = ..., scale_codebook: _Optional[int] = ..., rot_codebook: _Optional[int] = ..., kmeans_iters: _Optional[int] = ..., seed: _Optional[int] = ..., position_precision: _Optional[_Union[Precision, str]] = ..., opacity_precision: _Optional[_Union[Precision, str]] = ..., entropy: _Optional[_Union[Entropy, str]] = ..., sh_degree: _Optional[int] = ..., strict: _Optional[bool] = ..., importance: _Optional[_Union[Importance, str]] = ..., position_bits: _Optional[int] = ..., prune: _Optional[float] = ...) -> None: ...

class SplatTrainConfig(_message.Message):
    __slots__ = ("steps", "sh_degree", "seed", "sh_degree_interval", "ssim_lambda", "init", "init_num_points", "init_extent", "init_opacity", "init_scale", "means_lr", "means_lr_final", "scales_lr", "quats_lr", "opacities_lr", "sh0_lr", "shN_lr", "strategy", "refine_start", "refine_stop", "refine_every", "reset_every", "grow_grad2d", "cap_max", "checkpoint_every", "schedule", "reset_on_white", "qat", "dataset")
    class QatConfig(_message.Message):
        __slots__ = ("enabled", "start_step", "freeze_step", "reassign_every", "kmeans_iters", "dc_codebook", "sh_codebook", "scale_codebook", "rot_codebook", "opacity_reg", "prune_opacity", "prune_every", "prune_start", "prune_stop", "mode", "finetune_steps")
        ENABLED_FIELD_NUMBER: _ClassVar[int]
        START_STEP_FIELD_NUMBER: _ClassVar[int]
        FREEZE_STEP_FIELD_NUMBER: _ClassVar[int]
        REASSIGN_EVERY_FIELD_NUMBER: _ClassVar[int]
        KMEANS_ITERS_FIELD_NUMBER: _ClassVar[int]
        DC_CODEBOOK_FIELD_NUMBER: _ClassVar[int]
        SH_CODEBOOK_FIELD_NUMBER: _ClassVar[int]
        SCALE_CODEBOOK_FIELD_NUMBER: _ClassVar[int]
        ROT_CODEBOOK_FIELD_NUMBER: _ClassVar[int]
        OPACITY_REG_FIELD_NUMBER: _ClassVar[int]
        PRUNE_OPACITY_FIELD_NUMBER: _ClassVar[int]
        PRUNE_EVERY_FIELD_NUMBER: _ClassVar[int]
        PRUNE_START_FIELD_NUMBER: _ClassVar[int]
        PRUNE_STOP_FIELD_NUMBER: _ClassVar[int]
        MODE_FIELD_NUMBER: _ClassVar[int]
        FINETUNE_STEPS_FIELD_NUMBER: _ClassVar[int]
        enabled: bool
        start_step: int
        freeze_step: int
        reassign_every: int
        kmeans_iters: int
        dc_codebook: int
        sh_codebook: int
        scale_codebook: int
        rot_codebook: int
        opacity_reg: float
        prune_opacity: float
        prune_every: int
        prune_start: int
        prune_stop: int
        mode: QatMode
        finetune_steps: int
        def __init__(self, enabled: _Optional[bool] = ..., start_step: _Optional[int] = ..., freeze_step: _Optional[int] = ..., reassign_every: _Optional[int] = ..., kmeans_iters: _Optional[int] = ..., dc_codebook: _Optional[int] = ..., sh_codebook: _Optional[int] = ..., scale_codebook: _Optional[int] = ..., rot_codebook: _Optional[int] = ..., opacity_reg: _Optional[float] = ..., prune_opacity: _Optional[float] = ..., prune_every: _Optional[int] = ..., prune_start: _Optional[int] = ..., prune_stop: _Optional[int] = ..., mode: _Optional[_Union[QatMode, str]] = ..., finetune_steps: _Optional[int] = ...) -> None: ...
    STEPS_FIELD_NUMBER: _ClassVar[int]
    SH_DEGREE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SH_DEGREE_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    SSIM_LAMBDA_FIELD_NUMBER: _ClassVar[int]
    INIT_FIELD_NUMBER: _ClassVar[int]
    INIT_NUM_POINTS_FIELD_NUMBER: _ClassVar[int]
    INIT_EXTENT_FIELD_NUMBER: _ClassVar[int]
    INIT_OPACITY_FIELD_NUMBER: _ClassVar[int]
    INIT_SCALE_FIELD_NUMBER: _ClassVar[int]
    MEANS_LR_FIELD_NUMBER: _ClassVar[int]
    MEANS_LR_FINAL_FIELD_NUMBER: _ClassVar[int]
    SCALES_LR_FIELD_NUMBER: _ClassVar[int]
    QUATS_LR_FIELD_NUMBER: _ClassVar[int]
    OPACITIES_LR_FIELD_NUMBER: _ClassVar[int]
    SH0_LR_FIELD_NUMBER: _ClassVar[int]
    SHN_LR_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    REFINE_START_FIELD_NUMBER: _ClassVar[int]
    REFINE_STOP_FIELD_NUMBER: _ClassVar[int]
    REFINE_EVERY_FIELD_NUMBER: _ClassVar[int]
    RESET_EVERY_FIELD_NUMBER: _ClassVar[int]
    GROW_GRAD2D_FIELD_NUMBER: _ClassVar[int]
    CAP_MAX_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_EVERY_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    RESET_ON_WHITE_FIELD_NUMBER: _ClassVar[int]
    QAT_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    steps: int
    sh_degree: int
    seed: int
    sh_degree_interval: int
    ssim_lambda: float
    init: SplatInit
    init_num_points: int
    init_extent: float
    init_opacity: float
    init_scale: float
    means_lr: float
    means_lr_final: float
    scales_lr: float
    quats_lr: float
    opacities_lr: float
    sh0_lr: float
    shN_lr: float
    strategy: DensifyStrategy
    refine_start: int
    refine_stop: int
    refine_every: int
    reset_every: int
    grow_grad2d: float
    cap_max: int
    checkpoint_every: int
    schedule: TrainSchedule
    reset_on_white: bool
    qat: SplatTrainConfig.QatConfig
    dataset: DatasetOptions
    def __init__(self, steps: _Optional[int] = ..., sh_degree: _Optional[int] = ..., seed: _Optional[int] = ..., sh_degree_interval: _Optional[int] = ..., ssim_lambda: _Optional[float] = ..., init: _Optional[_Union[SplatInit, str]] = ..., init_num_points: _Optional[int] = ..., init_extent: _Optional[float] = ..., init_opacity: _Optional[float] = ..., init_scale: _Optional[float] = ..., means_lr: _Optional[float] = ..., means_lr_final: _Optional[float] = ..., scales_lr: _Optional[float] = ..., quats_lr: _Optional[float] = ..., opacities_lr: _Optional[float] = ..., sh0_lr: _Optional[float] = ..., shN_lr: _Optional[float] = ..., strategy: _Optional[_Union[DensifyStrategy, str]] = ..., refine_start: _Optional[int] = ..., refine_stop: _Optional[int] = ..., refine_every: _Optional[int] = ..., reset_every: _Optional[int] = ..., grow_grad2d: _Optional[float] = ..., cap_max: _Optional[int] = ..., checkpoint_every: _Optional[int] = ..., schedule: _Optional[_Union[TrainSchedule, str]] = ..., reset_on_white: _Optional[bool] = ..., qat: _Optional[_Union[SplatTrainConfig.QatConfig, _Mapping]] = ..., dataset: _Optional[_Union[DatasetOptions, _Mapping]] = ...) -> None: ...

class DatasetOptions(_message.Message):
    __slots__ = ("downscale", "background", "test_every")
    DOWNSCALE_FIELD_NUMBER: _ClassVar[int]
    BACKGROUND_FIELD_NUMBER: _ClassVar[int]
    TEST_EVERY_FIELD_NUMBER: _ClassVar[int]
    downscale: int
    background: Color
    test_every: int
    def __init__(self, downscale: _Optional[int] = ..., background: _Optional[_Union[Color, _Mapping]] = ..., test_every: _Optional[int] = ...) -> None: ...

class FieldTrainConfig(_message.Message):
    __slots__ = ("field", "steps", "batch_size", "lr", "seed", "mlp_lr", "samples_per_ray", "occupancy_resolution", "occupancy_update_every", "occupancy_warmup", "occupancy_threshold", "log_every", "dataset", "sampler", "march_steps", "target_samples", "early_stop_eps", "lr_warmup", "lr_decay", "weight_decay", "loss", "huber_delta", "random_background", "time_budget_s", "candidate_refresh_every", "march_box_bound", "fused_grid", "fused_adam", "torch_compile")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LR_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MLP_LR_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_PER_RAY_FIELD_NUMBER: _ClassVar[int]
    OCCUPANCY_RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    OCCUPANCY_UPDATE_EVERY_FIELD_NUMBER: _ClassVar[int]
    OCCUPANCY_WARMUP_FIELD_NUMBER: _ClassVar[int]
    OCCUPANCY_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    LOG_EVERY_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    SAMPLER_FIELD_NUMBER: _ClassVar[int]
    MARCH_STEPS_FIELD_NUMBER: _ClassVar[int]
    TARGET_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    EARLY_STOP_EPS_FIELD_NUMBER: _ClassVar[int]
    LR_WARMUP_FIELD_NUMBER: _ClassVar[int]
    LR_DECAY_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DECAY_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    HUBER_DELTA_FIELD_NUMBER: _ClassVar[int]
    RANDOM_BACKGROUND_FIELD_NUMBER: _ClassVar[int]
    TIME_BUDGET_S_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_REFRESH_EVERY_FIELD_NUMBER: _ClassVar[int]
    MARCH_BOX_BOUND_FIELD_NUMBER: _ClassVar[int]
    FUSED_GRID_FIELD_NUMBER: _ClassVar[int]
    FUSED_ADAM_FIELD_NUMBER: _ClassVar[int]
    TORCH_COMPILE_FIELD_NUMBER: _ClassVar[int]
    field: FieldConfig
    steps: int
    batch_size: int
    lr: float
    seed: int
    mlp_lr: float
    samples_per_ray: int
    occupancy_resolution: int
    occupancy_update_every: int
    occupancy_warmup: int
    occupancy_threshold: float
    log_every: int
    dataset: DatasetOptions
    sampler: str
    march_steps: int
    target_samples: int
    early_stop_eps: float
    lr_warmup: int
    lr_decay: str
    weight_decay: float
    loss: str
    huber_delta: float
    random_background: bool
    time_budget_s: float
    candidate_refresh_every: int
    march_box_bound: bool
    fused_grid: bool
    fused_adam: bool
    torch_compile: str
    def __init__(self, field: _Optional[_Union[FieldConfig, _Mapping]] = ..., steps: _Optional[int] = ..., batch_size: _Optional[int] = ..., lr: _Optional[float] = ..., seed: _Optional[int] = ..., mlp_lr: _Optional[float] = ..., samples_per_ray: _Optional[int] = ..., occupancy_resolution: _Optional[int] = ..., occupancy_update_every: _Optional[int] = ..., occupancy_warmup: _Optional[int] = ..., occupancy_threshold: _Optional[float] = ..., log_every: _Optional[int] = ..., dataset: _Optional[_Union[DatasetOptions, _Mapping]] = ..., sampler: _Optional[str] = ..., march_steps: _Optional[int] = ..., target_samples: _Optional[int] = ..., early_stop_eps: _Optional[float] = ..., lr_warmup: _Optional[int] = ..., lr_decay: _Optional[str] = ..., weight_decay: _Optional[float] = ..., loss: _Optional[str] = ..., huber_delta: _Optional[float] = ..., random_background: _Optional[bool] = ..., time_budget_s: _Optional[float] = ..., candidate_refresh_every: _Optional[int] = ..., march_box_bound: _Optional[bool] = ..., fused_grid: _Optional[bool] = ..., fused_adam: _Optional[bool] = ..., torch_compile: _Optional[str] = ...) -> None: ...

class DatasetSource(_message.Message):
    __slots__ = ("archive",)
    ARCHIVE_FIELD_NUMBER: _ClassVar[int]
    archive: ArtifactRef
    def __init__(self, archive: _Optional[_Union[ArtifactRef, _Mapping]] = ...) -> None: ...

class ArtifactRef(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ArtifactInfo(_message.Message):
    __slots__ = ("id", "name", "kind", "size", "created_at", "source_job")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_JOB_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    kind: str
    size: int
    created_at: float
    source_job: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[str] = ..., size: _Optional[int] = ..., created_at: _Optional[float] = ..., source_job: _Optional[str] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("name", "size", "digest", "kind", "digest_function")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FUNCTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    size: int
    digest: str
    kind: str
    digest_function: str
    def __init__(self, name: _Optional[str] = ..., size: _Optional[int] = ..., digest: _Optional[str] = ..., kind: _Optional[str] = ..., digest_function: _Optional[str] = ...) -> None: ...

class UploadArtifactRequest(_message.Message):
    __slots__ = ("header", "chunk", "digest")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    chunk: bytes
    digest: str
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ..., digest: _Optional[str] = ...) -> None: ...

class DownloadArtifactRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ArtifactChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class StatArtifactRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListArtifactsRequest(_message.Message):
    __slots__ = ("kind", "limit")
    KIND_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    kind: str
    limit: int
    def __init__(self, kind: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListArtifactsResponse(_message.Message):
    __slots__ = ("artifacts",)
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    artifacts: _containers.RepeatedCompositeFieldContainer[ArtifactInfo]
    def __init__(self, artifacts: _Optional[_Iterable[_Union[ArtifactInfo, _Mapping]]] = ...) -> None: ...

class DeleteArtifactRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteArtifactResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class JobRef(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class JobStatus(_message.Message):
    __slots__ = ("id", "kind", "state", "stage", "progress", "metrics", "results", "error", "attempts", "created_at", "started_at", "finished_at", "worker")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: JobKind
    state: JobState
    stage: str
    progress: float
    metrics: _containers.ScalarMap[str, float]
    results: _containers.RepeatedCompositeFieldContainer[ArtifactInfo]
    error: str
    attempts: int
    created_at: float
    started_at: float
    finished_at: float
    worker: str
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[_Union[JobKind, str]] = ..., state: _Optional[_Union[JobState, str]] = ..., stage: _Optional[str] = ..., progress: _Optional[float] = ..., metrics: _Optional[_Mapping[str, float]] = ..., results: _Optional[_Iterable[_Union[ArtifactInfo, _Mapping]]] = ..., error: _Optional[str] = ..., attempts: _Optional[int] = ..., created_at: _Optional[float] = ..., started_at: _Optional[float] = ..., finished_at: _Optional[float] = ..., worker: _Optional[str] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("states", "limit")
    STATES_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[JobState]
    limit: int
    def __init__(self, states: _Optional[_Iterable[_Union[JobState, str]]] = ..., limit: _Optional[int] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobStatus]
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobStatus, _Mapping]]] = ...) -> None: ...

class FieldQuantizeConfig(_message.Message):
    __slots__ = ("method", "bits", "rank", "iters", "seed")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    BITS_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    ITERS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    method: FieldQuantizeMethod
    bits: int
    rank: int
    iters: int
    seed: int
    def __init__(self, method: _Optional[_Union[FieldQuantizeMethod, str]] = ..., bits: _Optional[int] = ..., rank: _Optional[int] = ..., iters: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class QuantizeRequest(_message.Message):
    __slots__ = ("artifact", "splats", "field", "config", "field_config", "cameras", "background", "evaluate", "finetune")
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    SPLATS_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    FIELD_CONFIG_FIELD_NUMBER: _ClassVar[int]
    CAMERAS_FIELD_NUMBER: _ClassVar[int]
    BACKGROUND_FIELD_NUMBER: _ClassVar[int]
    EVALUATE_FIELD_NUMBER: _ClassVar[int]
    FINETUNE_FIELD_NUMBER: _ClassVar[int]
    artifact: ArtifactRef
    splats: GaussianSplats
    field: NeuralField
    config: QuantizeConfig
    field_config: FieldQuantizeConfig
    cameras: _containers.RepeatedCompositeFieldContainer[Camera]
    background: Color
    evaluate: bool
    finetune: QuantizeFinetune
    def __init__(self, artifact: _Optional[_Union[ArtifactRef, _Mapping]] = ..., splats: _Optional[_Union[GaussianSplats, _Mapping]] = ..., field: _Optional[_Union[NeuralField, _Mapping]] = ..., config: _Optional[_Union[QuantizeConfig, _Mapping]] = ..., field_config: _Optional[_Union[FieldQuantizeConfig, _Mapping]] = ..., cameras: _Optional[_Iterable[_Union[Camera, _Mapping]]] = ..., background: _Optional[_Union[Color, _Mapping]] = ..., evaluate: _Optional[bool] = ..., finetune: _Optional[_Union[QuantizeFinetune, _Mapping]] = ...) -> None: ...

class QuantizeFinetune(_message.Message):
    __slots__ = ("dataset", "steps")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    dataset: ArtifactRef
    steps: int
    def __init__(self, dataset: _Optional[_Union[ArtifactRef, _Mapping]] = ..., steps: _Optional[int] = ...) -> None: ...

class ExportOptions(_message.Message):
    __slots__ = ("sh_degree", "min_opacity", "box_min", "box_max", "drop_non_finite", "spz_axes", "sog_sh_palette")
    SH_DEGREE_FIELD_NUMBER: _ClassVar[int]
    MIN_OPACITY_FIELD_NUMBER: _ClassVar[int]
    BOX_MIN_FIELD_NUMBER: _ClassVar[int]
    BOX_MAX_FIELD_NUMBER: _ClassVar[int]
    DROP_NON_FINITE_FIELD_NUMBER: _ClassVar[int]
    SPZ_AXES_FIELD_NUMBER: _ClassVar[int]
    SOG_SH_PALETTE_FIELD_NUMBER: _ClassVar[int]
    sh_degree: int
    min_opacity: float
    box_min: _containers.RepeatedScalarFieldContainer[float]
    box_max: _containers.RepeatedScalarFieldContainer[float]
    drop_non_finite: bool
    spz_axes: SpzAxes
    sog_sh_palette: int
    def __init__(self, sh_degree: _Optional[int] = ..., min_opacity: _Optional[float] = ..., box_min: _Optional[_Iterable[float]] = ..., box_max: _Optional[_Iterable[float]] = ..., drop_non_finite: _Optional[bool] = ..., spz_axes: _Optional[_Union[SpzAxes, str]] = ..., sog_sh_palette: _Optional[int] = ...) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ("artifact", "splats", "field", "format", "config", "options")
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    SPLATS_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    artifact: ArtifactRef
    splats: GaussianSplats
    field: NeuralField
    format: ExportFormat
    config: QuantizeConfig
    options: ExportOptions
    def __init__(self, artifact: _Optional[_Union[ArtifactRef, _Mapping]] = ..., splats: _Optional[_Union[GaussianSplats, _Mapping]] = ..., field: _Optional[_Union[NeuralField, _Mapping]] = ..., format: _Optional[_Union[ExportFormat, str]] = ..., config: _Optional[_Union[QuantizeConfig, _Mapping]] = ..., options: _Optional[_Union[ExportOptions, _Mapping]] = ...) -> None: ...

class TrainRequest(_message.Message):
    __slots__ = ("dataset", "splats", "field", "init")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    SPLATS_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    INIT_FIELD_NUMBER: _ClassVar[int]
    dataset: DatasetSource
    splats: SplatTrainConfig
    field: FieldTrainConfig
    init: ArtifactRef
    def __init__(self, dataset: _Optional[_Union[DatasetSource, _Mapping]] = ..., splats: _Optional[_Union[SplatTrainConfig, _Mapping]] = ..., field: _Optional[_Union[FieldTrainConfig, _Mapping]] = ..., init: _Optional[_Union[ArtifactRef, _Mapping]] = ...) -> None: ...

class RenderRequest(_message.Message):
    __slots__ = ("artifact", "splats", "field", "cameras", "background", "encoding")
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    SPLATS_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    CAMERAS_FIELD_NUMBER: _ClassVar[int]
    BACKGROUND_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    artifact: ArtifactRef
    splats: GaussianSplats
    field: NeuralField
    cameras: _containers.RepeatedCompositeFieldContainer[Camera]
    background: Color
    encoding: ImageEncoding
    def __init__(self, artifact: _Optional[_Union[ArtifactRef, _Mapping]] = ..., splats: _Optional[_Union[GaussianSplats, _Mapping]] = ..., field: _Optional[_Union[NeuralField, _Mapping]] = ..., cameras: _Optional[_Iterable[_Union[Camera, _Mapping]]] = ..., background: _Optional[_Union[Color, _Mapping]] = ..., encoding: _Optional[_Union[ImageEncoding, str]] = ...) -> None: ...

class RenderedImage(_message.Message):
    __slots__ = ("index", "name", "width", "height", "png", "rgb")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    RGB_FIELD_NUMBER: _ClassVar[int]
    index: int
    name: str
    width: int
    height: int
    png: bytes
    rgb: Tensor
    def __init__(self, index: _Optional[int] = ..., name: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., png: _Optional[bytes] = ..., rgb: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class GetServerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerLimits(_message.Message):
    __slots__ = ("max_message_bytes", "chunk_bytes", "max_artifact_bytes", "max_queued_jobs", "max_render_cameras")
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_ARTIFACT_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUED_JOBS_FIELD_NUMBER: _ClassVar[int]
    MAX_RENDER_CAMERAS_FIELD_NUMBER: _ClassVar[int]
    max_message_bytes: int
    chunk_bytes: int
    max_artifact_bytes: int
    max_queued_jobs: int
    max_render_cameras: int
    def __init__(self, max_message_bytes: _Optional[int] = ..., chunk_bytes: _Optional[int] = ..., max_artifact_bytes: _Optional[int] = ..., max_queued_jobs: _Optional[int] = ..., max_render_cameras: _Optional[int] = ...) -> None: ...

class ServerInfo(_message.Message):
    __slots__ = ("version", "executor", "workers", "devices", "auth_required", "tls", "limits", "upload_digest_last", "digest_functions")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EXECUTOR_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    AUTH_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_DIGEST_LAST_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    version: str
    executor: str
    workers: int
    devices: _containers.RepeatedScalarFieldContainer[str]
    auth_required: bool
    tls: bool
    limits: ServerLimits
    upload_digest_last: bool
    digest_functions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, version: _Optional[str] = ..., executor: _Optional[str] = ..., workers: _Optional[int] = ..., devices: _Optional[_Iterable[str]] = ..., auth_required: _Optional[bool] = ..., tls: _Optional[bool] = ..., limits: _Optional[_Union[ServerLimits, _Mapping]] = ..., upload_digest_last: _Optional[bool] = ..., digest_functions: _Optional[_Iterable[str]] = ...) -> None: ...
