"""Where and in what precision a worker runs its model, and how many contexts it scores per forward call.

Three settings, read once per worker (``faithaudit.config``):
- ``FAITHAUDIT_DEVICE``: ``cpu`` (default), ``cuda``, ``cuda:N``, or ``auto`` (accelerate's ``device_map="auto"``
  over every visible GPU, for a model larger than one). A CUDA device that torch cannot see is a start-up error
  naming the variable (``DeviceSettingError``), never a silent fall-back to the CPU.
- ``FAITHAUDIT_DTYPE``: the weights' dtype. Whatever it is, the LM head runs in float32 (``upcast_lm_head``) and
  the log-softmax in float64, so log-probs are never rounded to bfloat16's 8 bits of mantissa.
- ``FAITHAUDIT_BATCH_SIZE``: contexts per forward call over a shared cached prefix. ``auto`` is 1 on CPU (where
  batching does not pay, ``benchmarks/batching.py``); on CUDA it is bounded twice: by what fits in a fixed share of
  the device's *total* memory, and by the matmul work of one call (``AUTO_CALL_FLOP``): the rows of a batch share
  only their common prefix, so batching pays while a call is too small to fill the GPU and costs once it fills it
  (on an H200: 6.6x at 16 rows for a 135M model in bfloat16, 0.77x at 32 rows for a 1.2B one). Both bounds are
  fixed properties of the device, the dtype and the model, never a timing or the memory free at run time, so a
  report does not depend on machine load.

torch is imported inside the functions: the API process imports this module's settings types only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from faithaudit.errors import FaithauditError

if TYPE_CHECKING:
    import torch

DTYPES = ("float32", "bfloat16", "float16")
AUTO_MAX_BATCH = 32  # most rows one call scores under batch_size=auto
AUTO_MEMORY_SHARE = 0.25  # of the device's total memory, for the rows' activations and logits under auto
# matmul work (2 x parameters x tokens) one call may do under auto on CUDA: the fastest batch sizes measured on an
# H200 (benchmarks/README.md, "Batching on a GPU") did about this much per call
AUTO_CALL_FLOP = {"bfloat16": 8e12, "float16": 8e12, "float32": 2e12}


class DeviceSettingError(FaithauditError):
    """FAITHAUDIT_DEVICE or FAITHAUDIT_DTYPE cannot be honoured on this machine (a start-up error: CLI exit 2)."""

    code = "bad_setting"


@dataclass(frozen=True)
class Compute:
    """The resolved compute settings of one worker; ``report.controls.compute`` records them."""

    device: str = "cpu"  # cpu, cuda, cuda:N, auto
    dtype: str = "float32"
    batch_size: int | str = "auto"

    @classmethod
    def from_settings(cls, settings) -> Compute:
        return cls(device=settings.device, dtype=settings.dtype, batch_size=settings.batch_size)

    @property
    def device_type(self) -> str:
        return "cpu" if self.device == "cpu" else "cuda"


def check_device(compute: Compute) -> None:
    """Raise ``DeviceSettingError`` naming the variable when the device or dtype cannot be used here."""
    import torch

    if compute.dtype not in DTYPES:
        raise DeviceSettingError(f"FAITHAUDIT_DTYPE={compute.dtype}: use one of {', '.join(DTYPES)}")
    if compute.device == "cpu":
        return
    if not torch.cuda.is_available():
        raise DeviceSettingError(
            f"FAITHAUDIT_DEVICE={compute.device}: torch sees no CUDA device here "
            f"(torch {torch.__version__}, built {'with' if torch.version.cuda else 'without'} CUDA); "
            "use FAITHAUDIT_DEVICE=cpu"
        )
    if compute.device.startswith("cuda:"):
        index = int(compute.device.split(":", 1)[1])
        if index >= torch.cuda.device_count():
            raise DeviceSettingError(
                f"FAITHAUDIT_DEVICE={compute.device}: only {torch.cuda.device_count()} CUDA device(s) are visible"
            )


def torch_dtype(name: str) -> torch.dtype:
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def load_kwargs(compute: Compute) -> dict:
    """``from_pretrained`` keyword arguments for ``compute`` (dtype; ``device_map`` for ``auto``)."""
    kwargs: dict = {"dtype": torch_dtype(compute.dtype)}
    if compute.device == "auto":
        kwargs["device_map"] = "auto"
    return kwargs


def place(model: torch.nn.Module, compute: Compute) -> torch.nn.Module:
    """Move a loaded model onto its device (``auto`` was placed by accelerate while loading)."""
    if compute.device not in ("cpu", "auto"):
        model = model.to(compute.device)
    return model


def input_device(model: torch.nn.Module) -> torch.device:
    """Where input ids go: the device of the input embeddings (the first shard under ``device_map``)."""
    return model.get_input_embeddings().weight.device


def upcast_lm_head(model: torch.nn.Module) -> bool:
    """Compute the output projection in float32 from a float32 copy of its weight when the model is not float32;
    returns whether it did. Soft-capping and the rest of the model's head then run on float32 logits."""
    import torch

    head = model.get_output_embeddings()
    if head is None or head.weight.dtype == torch.float32:
        return False
    weight = head.weight.detach().float()
    bias = None if getattr(head, "bias", None) is None else head.bias.detach().float()

    def forward(hidden: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(hidden.float(), weight, bias)

    head.forward = forward
    return True


def auto_rows(
    device_type: str, *, total_memory: int | None, bytes_per_row: int, flop_per_row: float = 0.0, dtype: str = ""
) -> int:
    """Rows per forward call under ``batch_size=auto``: 1 on CPU; on CUDA, what fits in ``AUTO_MEMORY_SHARE`` of
    the device's total memory (a fixed property of the device, not a run-time reading) and in ``AUTO_CALL_FLOP`` of
    matmul work for ``dtype``, at most ``AUTO_MAX_BATCH``."""
    if device_type == "cpu" or not total_memory:
        return 1
    by_memory = int(AUTO_MEMORY_SHARE * total_memory) // max(bytes_per_row, 1)
    by_work = int(AUTO_CALL_FLOP.get(dtype, AUTO_CALL_FLOP["float32"]) // max(flop_per_row, 1.0))
    return max(1, min(AUTO_MAX_BATCH, by_memory, by_work))


def row_flop(*, parameters: int, tokens: int) -> float:
    """One row's matmul work in a forward call: about 2 multiply-adds' worth per parameter per token."""
    return 2.0 * parameters * tokens


def row_bytes(*, layers: int, kv_width: int, hidden: int, vocab: int, tokens: int, scored: int, itemsize: int) -> int:
    """A generous estimate of one batch row's memory: its KV cache (keys and values per layer), a few hidden-state
    activations per token, and its scored logits in float32 plus their float64 log-softmax."""
    kv = 2 * layers * kv_width * tokens * itemsize
    activations = 8 * hidden * tokens * itemsize
    logits = scored * vocab * (4 + 8 + 8)
    return kv + activations + logits
