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

class FieldGrid(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FIELD_GRID_UNSPECIFIED: _ClassVar[FieldGrid]
    FIELD_GRID_VQAD: _ClassVar[FieldGrid]
    FIELD_GRID_HASH: _ClassVar[FieldGrid]

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

class DatasetFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATASET_FORMAT_UNSPECIFIED: _ClassVar[DatasetFormat]
    DATASET_FORMAT_AUTO: _ClassVar[DatasetFormat]
    DATASET_FORMAT_NERF_SYNTHETIC: _ClassVar[DatasetFormat]
    DATASET_FORMAT_INSTANT_NGP: _ClassVar[DatasetFormat]
    DATASET_FORMAT_COLMAP: _ClassVar[DatasetFormat]

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

class ExportFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_FORMAT_UNSPECIFIED: _ClassVar[ExportFormat]
    EXPORT_FORMAT_PLY: _ClassVar[ExportFormat]
    EXPORT_FORMAT_SPLAT: _ClassVar[ExportFormat]
    EXPORT_FORMAT_SPZ: _ClassVar[ExportFormat]
    EXPORT_FORMAT_VQP: _ClassVar[ExportFormat]

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
FIELD_GRID_UNSPECIFIED: FieldGrid
FIELD_GRID_VQAD: FieldGrid
FIELD_GRID_HASH: FieldGrid
PRECISION_UNSPECIFIED: Precision
PRECISION_FP32: Precision
PRECISION_FP16: Precision
PRECISION_FIXED16: Precision
PRECISION_UINT8: Precision
ENTROPY_UNSPECIFIED: Entropy
ENTROPY_ZSTD: Entropy
ENTROPY_NONE: Entropy
DATASET_FORMAT_UNSPECIFIED: DatasetFormat
DATASET_FORMAT_AUTO: DatasetFormat
DATASET_FORMAT_NERF_SYNTHETIC: DatasetFormat
DATASET_FORMAT_INSTANT_NGP: DatasetFormat
DATASET_FORMAT_COLMAP: DatasetFormat
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
EXPORT_FORMAT_UNSPECIFIED: ExportFormat
EXPORT_FORMAT_PLY: ExportFormat
EXPORT_FORMAT_SPLAT: ExportFormat
EXPORT_FORMAT_SPZ: ExportFormat
EXPORT_FORMAT_VQP: ExportFormat
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

class FieldConfig(_message.Message):
    __slots__ = ("grid", "levels", "base_resolution", "max_resolution", "table_log2", "codebook_bits", "feature_dim", "mlp_width", "mlp_layers")
    GRID_FIELD_NUMBER: _ClassVar[int]
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    BASE_RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    MAX_RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    TABLE_LOG2_FIELD_NUMBER: _ClassVar[int]
    CODEBOOK_BITS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_DIM_FIELD_NUMBER: _ClassVar[int]
    MLP_WIDTH_FIELD_NUMBER: _ClassVar[int]
    MLP_LAYERS_FIELD_NUMBER: _ClassVar[int]
    grid: FieldGrid
    levels: int
    base_resolution: int
    max_resolution: int
    table_log2: int
    codebook_bits: int
    feature_dim: int
    mlp_width: int
    mlp_layers: int
    def __init__(self, grid: _Optional[_Union[FieldGrid, str]] = ..., levels: _Optional[int] = ..., base_resolution: _Optional[int] = ..., max_resolution: _Optional[int] = ..., table_log2: _Optional[int] = ..., codebook_bits: _Optional[int] = ..., feature_dim: _Optional[int] = ..., mlp_width: _Optional[int] = ..., mlp_layers: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("preset", "dc_codebook", "sh_codebook", "scale_codebook", "rot_codebook", "kmeans_iters", "seed", "position_precision", "opacity_precision", "entropy", "sh_degree", "strict")
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
    def __init__(self, preset: _Optional[str] = ..., dc_codebook: _Optional[int] = ..., sh_codebook: _Optional[int] = ..., scale_codebook: _Optional[int] = ..., rot_codebook: _Optional[int] = ..., kmeans_iters: _Optional[int] = ..., seed: _Optional[int] = ..., position_precision: _Optional[_Union[Precision, str]] = ..., opacity_precision: _Optional[_Union[Precision, str]] = ..., entropy: _Optional[_Union[Entropy, str]] = ..., sh_degree: _Optional[int] = ..., strict: _Optional[bool] = ...) -> None: ...

class SplatTrainConfig(_message.Message):
    __slots__ = ("iterations", "sh_degree", "qat", "quantize", "kmeans_every", "opacity_reg", "prune_opacity", "resolution_scale", "seed")
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    SH_DEGREE_FIELD_NUMBER: _ClassVar[int]
    QAT_FIELD_NUMBER: _ClassVar[int]
    QUANTIZE_FIELD_NUMBER: _ClassVar[int]
    KMEANS_EVERY_FIELD_NUMBER: _ClassVar[int]
    OPACITY_REG_FIELD_NUMBER: _ClassVar[int]
    PRUNE_OPACITY_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_SCALE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    iterations: int
    sh_degree: int
    qat: bool
    quantize: QuantizeConfig
    kmeans_every: int
    opacity_reg: float
    prune_opacity: float
    resolution_scale: float
    seed: int
    def __init__(self, iterations: _Optional[int] = ..., sh_degree: _Optional[int] = ..., qat: _Optional[bool] = ..., quantize: _Optional[_Union[QuantizeConfig, _Mapping]] = ..., kmeans_every: _Optional[int] = ..., opacity_reg: _Optional[float] = ..., prune_opacity: _Optional[float] = ..., resolution_scale: _Optional[float] = ..., seed: _Optional[int] = ...) -> None: ...

class FieldTrainConfig(_message.Message):
    __slots__ = ("field", "iterations", "rays_per_batch", "learning_rate", "resolution_scale", "seed")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    RAYS_PER_BATCH_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_SCALE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    field: FieldConfig
    iterations: int
    rays_per_batch: int
    learning_rate: float
    resolution_scale: float
    seed: int
    def __init__(self, field: _Optional[_Union[FieldConfig, _Mapping]] = ..., iterations: _Optional[int] = ..., rays_per_batch: _Optional[int] = ..., learning_rate: _Optional[float] = ..., resolution_scale: _Optional[float] = ..., seed: _Optional[int] = ...) -> None: ...

class DatasetSource(_message.Message):
    __slots__ = ("archive", "format")
    ARCHIVE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    archive: ArtifactRef
    format: DatasetFormat
    def __init__(self, archive: _Optional[_Union[ArtifactRef, _Mapping]] = ..., format: _Optional[_Union[DatasetFormat, str]] = ...) -> None: ...

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
    __slots__ = ("name", "size", "sha256", "kind")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    name: str
    size: int
    sha256: str
    kind: str
    def __init__(self, name: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class UploadArtifactRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

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
    __slots__ = ("id", "kind", "state", "stage", "progress", "metrics", "results", "error", "attempts", "created_at", "started_at", "finished_at")
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
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[_Union[JobKind, str]] = ..., state: _Optional[_Union[JobState, str]] = ..., stage: _Optional[str] = ..., progress: _Optional[float] = ..., metrics: _Optional[_Mapping[str, float]] = ..., results: _Optional[_Iterable[_Union[ArtifactInfo, _Mapping]]] = ..., error: _Optional[str] = ..., attempts: _Optional[int] = ..., created_at: _Optional[float] = ..., started_at: _Optional[float] = ..., finished_at: _Optional[float] = ...) -> None: ...

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

class QuantizeRequest(_message.Message):
    __slots__ = ("artifact", "splats", "field", "config", "cameras", "background")
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    SPLATS_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    CAMERAS_FIELD_NUMBER: _ClassVar[int]
    BACKGROUND_FIELD_NUMBER: _ClassVar[int]
    artifact: ArtifactRef
    splats: GaussianSplats
    field: NeuralField
    config: QuantizeConfig
    cameras: _containers.RepeatedCompositeFieldContainer[Camera]
    background: Color
    def __init__(self, artifact: _Optional[_Union[ArtifactRef, _Mapping]] = ..., splats: _Optional[_Union[GaussianSplats, _Mapping]] = ..., field: _Optional[_Union[NeuralField, _Mapping]] = ..., config: _Optional[_Union[QuantizeConfig, _Mapping]] = ..., cameras: _Optional[_Iterable[_Union[Camera, _Mapping]]] = ..., background: _Optional[_Union[Color, _Mapping]] = ...) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ("artifact", "splats", "field", "format", "config")
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    SPLATS_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    artifact: ArtifactRef
    splats: GaussianSplats
    field: NeuralField
    format: ExportFormat
    config: QuantizeConfig
    def __init__(self, artifact: _Optional[_Union[ArtifactRef, _Mapping]] = ..., splats: _Optional[_Union[GaussianSplats, _Mapping]] = ..., field: _Optional[_Union[NeuralField, _Mapping]] = ..., format: _Optional[_Union[ExportFormat, str]] = ..., config: _Optional[_Union[QuantizeConfig, _Mapping]] = ...) -> None: ...

class TrainRequest(_message.Message):
    __slots__ = ("dataset", "splats", "field")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    SPLATS_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    dataset: DatasetSource
    splats: SplatTrainConfig
    field: FieldTrainConfig
    def __init__(self, dataset: _Optional[_Union[DatasetSource, _Mapping]] = ..., splats: _Optional[_Union[SplatTrainConfig, _Mapping]] = ..., field: _Optional[_Union[FieldTrainConfig, _Mapping]] = ...) -> None: ...

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
