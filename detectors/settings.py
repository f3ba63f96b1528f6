"""Detector settings and the zone geometry the detectors count in."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from ingest.settings import StrictModel

Point = tuple[float, float]
TileCount = Annotated[int, Field(ge=1, le=16)]


class DetectorName(str, Enum):
    crowd = "crowd"
    fire = "fire"


def _segments_cross(a: Point, b: Point, c: Point, d: Point) -> bool:
    def orient(p: Point, q: Point, r: Point) -> float:
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])

    o1, o2, o3, o4 = orient(a, b, c), orient(a, b, d), orient(c, d, a), orient(c, d, b)
    return (o1 * o2 < 0) and (o3 * o4 < 0)


def check_polygon(points: list[Point]) -> list[Point]:
    """Validate a polygon in relative 0–1 coordinates: ≥ 3 points, inside [0,1], not self-intersecting."""
    if len(points) < 3:
        raise ValueError(f"polygon needs at least 3 points, got {len(points)}")
    for i, (x, y) in enumerate(points):
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise ValueError(f"point {i} ({x}, {y}) is outside [0, 1] (coordinates are relative to the frame)")
    n = len(points)
    edges = [(points[i], points[(i + 1) % n]) for i in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if j == i + 1 or (i == 0 and j == n - 1):
                continue  # adjacent edges share a vertex
            if _segments_cross(*edges[i], *edges[j]):
                raise ValueError(f"polygon is self-intersecting (edge {i} crosses edge {j})")
    return points


class Zone(StrictModel):
    """A named polygon in relative coordinates; people are counted by their box's bottom-centre."""

    name: str = Field(..., min_length=1, description="Zone name, unique within the camera.")
    polygon: list[Point] = Field(..., description="Vertices as [x, y] pairs in 0–1 frame coordinates.")
    area_m2: float | None = Field(None, gt=0, description="Ground area of the zone; enables density per m².")
    crowd_threshold: float | None = Field(None, gt=0, description="People (or people/m² when area_m2 is set) that open a crowding event here; overrides rules.crowding.threshold.")
    crowd_clear_threshold: float | None = Field(None, gt=0, description="Level under which the crowding event may close (above 0: the close needs a level below it); overrides rules.crowding.clear_threshold.")

    @field_validator("polygon")
    @classmethod
    def _valid_polygon(cls, value: list[Point]) -> list[Point]:
        return check_polygon(value)


class CrowdSettings(StrictModel):
    """Person counting."""

    model: str = Field("yolox_nano_coco_416", description="Model name from models/models.yaml.")
    estimator: Literal["boxes", "density", "auto"] = Field("boxes", description="Count by person boxes, by a density map, or choose by scene density.")
    score_threshold: float = Field(0.5, ge=0, le=1, description="Minimum person score (obj × cls).")
    nms_iou: float = Field(0.45, gt=0, le=1, description="IoU above which overlapping boxes are merged.")
    tiles: tuple[TileCount, TileCount] = Field((1, 1), description="Overlapping tiles (cols, rows), each 1–16, for wide views; boxes merged by NMS.")
    tile_overlap: float = Field(0.2, ge=0, lt=1, description="Fraction by which neighbouring tiles overlap.")
    auto_density_above: int = Field(20, ge=1, description="estimator=auto: use the density map when boxes count more people than this.")
    top_k_boxes: int = Field(50, ge=0, le=1000, description="Boxes kept in the detection record.")


class FireSettings(StrictModel):
    """Fire classification."""

    model: str = Field("shufflenetv2_onfire_224", description="Model name from models/models.yaml.")
    scorer: str = Field("classifier", description="Fire scorer plugin from detectors.plugins.FIRE_SCORERS.")
    threshold: float = Field(0.5, ge=0, le=1, description="P(fire) at or above which a frame counts as fire.")
    confirm_k: int = Field(3, ge=1, description="Frames at or above threshold needed ...")
    confirm_n: int = Field(5, ge=1, description="... within the last this many analysed frames.")

    @model_validator(mode="after")
    def _confirmable(self) -> FireSettings:
        if self.confirm_k > self.confirm_n:
            raise ValueError(f"confirm_k ({self.confirm_k}) must not exceed confirm_n ({self.confirm_n}): "
                             "fire could never be confirmed")
        return self


class RuntimeSettings(StrictModel):
    """ONNX Runtime and batching."""

    providers: list[str] = Field(["CPUExecutionProvider"], description="Execution providers in order of preference; missing ones fall back (logged).")
    intra_op_threads: int = Field(0, ge=0, description="Threads per session (0 = onnxruntime default).")
    max_batch: int = Field(8, ge=1, description="Largest cross-camera micro-batch.")
    max_wait_ms: float = Field(20.0, ge=0, description="Longest a frame waits for its batch to fill.")
    batching: Literal["auto", "dynamic", "parallel"] = Field("auto", description="Serve a batch as runs of max_batch with all threads or as parallel sub-batch runs (batch dimension made dynamic for either); auto = parallel on the CPU provider for a fixed input size, else dynamic (CUDA/TensorRT, inputs sized by the image).")
    parallel_runs: int = Field(0, ge=0, description="Concurrent runs (pool threads, one intra-op thread each) in parallel mode (0 = usable cores).")
    uint8_input: bool = Field(True, description="Serve fixed-size registry models from the resized uint8 image, with the cast, mean/std and channel order folded into the graph (scores within 1e-4); false = float tensors normalised in numpy.")
    rect_letterbox: bool = Field(True, description="Letterbox into the smallest canvas the model allows (its registry rect_multiple) instead of its full square input: a 4:3 frame runs YOLOX-Nano at 416x320, about a quarter less compute, boxes as with the square (not on TensorRT, which builds an engine per input shape); false = always the declared size.")
