#!/usr/bin/env python3
"""ctypes smoke test of the vikt shared library (standard library only).

Run by `make check-ffi`, which builds build/libvikt.so from the archive and
passes its path in VIKT_SO. Every public function is declared below by hand;
a test compares the declared names with the VIKT_API functions in
include/vikt.h, so a new function without a declaration fails here.

Prints one closing line, `ffi: N passed, M failed`, and exits non-zero on any
failure.
"""

import ctypes
import os
import re
import shutil
import subprocess
import sys
import traceback
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char_p, c_float, c_int,
                    c_int32, c_int64, c_size_t, c_uint64, c_void_p)
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEADER = Path(os.environ.get("VIKT_HEADER", ROOT / "include" / "vikt.h"))


# --------------------------------------------------------------- types ---

class vikt_model(Structure):
    """Opaque; only ever handled through POINTER(vikt_model)."""


class vikt_tensor(Structure):
    """Opaque."""


class vikt_optimizer(Structure):
    """Opaque."""


class vikt_update_tracker(Structure):
    """Opaque."""


class vikt_gap_tracker(Structure):
    """Opaque."""


class vikt_dataset(Structure):
    """Opaque."""


Model = POINTER(vikt_model)
Tensor = POINTER(vikt_tensor)
Optimizer = POINTER(vikt_optimizer)
UpdateTracker = POINTER(vikt_update_tracker)
GapTracker = POINTER(vikt_gap_tracker)
Dataset = POINTER(vikt_dataset)


class vikt_trainer(Structure):
    """Opaque."""


Trainer = POINTER(vikt_trainer)


class vikt_ewc(Structure):
    """Opaque."""


Ewc = POINTER(vikt_ewc)
# ctypes callbacks cannot return a structure pointer: the tensor comes back
# as an address.
vikt_forward_fn = CFUNCTYPE(c_void_p, Model, Tensor, c_void_p)
vikt_fit_callback_fn = CFUNCTYPE(c_int, Trainer, c_int, c_void_p)
vikt_penalty_fn = CFUNCTYPE(c_void_p, Model, c_void_p)
vikt_write_fn = CFUNCTYPE(None, c_void_p, POINTER(ctypes.c_char), c_size_t)

vikt_alloc_fn = CFUNCTYPE(c_void_p, c_void_p, c_size_t, c_size_t)
vikt_free_fn = CFUNCTYPE(None, c_void_p, c_void_p, c_size_t)


class vikt_allocator(Structure):
    _fields_ = [("alloc", vikt_alloc_fn), ("free", vikt_free_fn), ("ud", c_void_p)]


class vikt_stats(Structure):
    """The public struct, member for member as in vikt.h."""
    _fields_ = [("count", c_int64), ("finite_count", c_int64), ("nan_count", c_int64),
                ("inf_count", c_int64), ("zero_count", c_int64), ("mean", ctypes.c_double),
                ("std", ctypes.c_double), ("std_unbiased", ctypes.c_double),
                ("min", ctypes.c_double), ("max", ctypes.c_double), ("l2_norm", ctypes.c_double),
                ("zero_fraction", ctypes.c_double)]


vikt_init = c_int  # enum vikt_init
vikt_optim_kind = c_int  # enum vikt_optim_kind
vikt_optim_param = c_int  # enum vikt_optim_param
I64P = POINTER(c_int64)
F32P = POINTER(c_float)
DOUBLEP = POINTER(ctypes.c_double)

VIKT_OK, VIKT_ERR_NULL, VIKT_ERR_NOMEM, VIKT_ERR_SHAPE = 0, -1, -2, -3
VIKT_ERR_ARG, VIKT_ERR_STATE = -4, -5
VIKT_INIT_ZEROS = 0

# name: (restype, [argtypes]) -- written by hand from include/vikt.h.
SIGNATURES = {
    "vikt_version": (c_char_p, []),
    "vikt_strerror": (c_char_p, [c_int]),
    # model
    "vikt_model_create": (c_int, [POINTER(vikt_allocator), c_uint64, POINTER(Model)]),
    "vikt_model_destroy": (None, [Model]),
    "vikt_model_errcode": (c_int, [Model]),
    "vikt_model_errmsg": (c_char_p, [Model]),
    "vikt_model_clear_error": (None, [Model]),
    "vikt_model_seed": (c_int, [Model, c_uint64]),
    "vikt_step_begin": (c_int, [Model]),
    "vikt_set_grad_enabled": (c_int, [Model, c_int]),
    "vikt_grad_enabled": (c_int, [Model]),
    "vikt_set_training": (c_int, [Model, c_int]),
    "vikt_training": (c_int, [Model]),
    "vikt_backward": (c_int, [Model, Tensor]),
    "vikt_zero_grad": (c_int, [Model]),
    # tensors
    "vikt_tensor_create": (c_int, [Model, c_int, I64P, F32P, c_int, POINTER(Tensor)]),
    "vikt_tensor_destroy": (None, [Tensor]),
    "vikt_input": (Tensor, [Model, c_int, I64P, F32P]),
    "vikt_full": (Tensor, [Model, c_int, I64P, c_float]),
    "vikt_zeros": (Tensor, [Model, c_int, I64P]),
    "vikt_ones": (Tensor, [Model, c_int, I64P]),
    "vikt_randn": (Tensor, [Model, c_int, I64P, c_float, c_float]),
    "vikt_rand": (Tensor, [Model, c_int, I64P, c_float, c_float]),
    "vikt_tensor_fill": (c_int, [Tensor, c_float]),
    "vikt_tensor_fill_normal": (c_int, [Tensor, c_float, c_float]),
    "vikt_tensor_fill_uniform": (c_int, [Tensor, c_float, c_float]),
    "vikt_tensor_rank": (c_int, [Tensor]),
    "vikt_tensor_dim": (c_int64, [Tensor, c_int]),
    "vikt_tensor_numel": (c_int64, [Tensor]),
    "vikt_tensor_shape": (c_int, [Tensor, I64P]),
    "vikt_tensor_data": (F32P, [Tensor]),
    "vikt_tensor_grad": (F32P, [Tensor]),
    "vikt_tensor_copy_out": (c_int, [Tensor, F32P, c_int64]),
    "vikt_tensor_copy_in": (c_int, [Tensor, F32P, c_int64]),
    "vikt_tensor_requires_grad": (c_int, [Tensor]),
    "vikt_tensor_set_requires_grad": (c_int, [Tensor, c_int]),
    "vikt_tensor_name": (c_char_p, [Tensor]),
    # parameters
    "vikt_param": (Tensor, [Model, c_char_p, c_int, I64P, vikt_init]),
    "vikt_param_find": (Tensor, [Model, c_char_p]),
    "vikt_param_count": (c_int64, [Model]),
    "vikt_param_at": (Tensor, [Model, c_int64]),
    "vikt_model_num_params": (c_int64, [Model]),
    "vikt_buffer": (Tensor, [Model, c_char_p, c_int, I64P, c_float]),
    "vikt_buffer_find": (Tensor, [Model, c_char_p]),
    "vikt_buffer_count": (c_int64, [Model]),
    "vikt_buffer_at": (Tensor, [Model, c_int64]),
    "vikt_model_num_trainable": (c_int64, [Model]),
    "vikt_param_freeze": (c_int64, [Model, c_char_p, c_int]),
    "vikt_model_summary": (c_int64, [Model, POINTER(ctypes.c_char), c_size_t]),
    # pruning
    "vikt_prune_magnitude": (c_int64, [Model, c_char_p, ctypes.c_double, c_int]),
    "vikt_prune_schedule": (c_int, [Model, c_int64, ctypes.c_double, ctypes.c_double, c_int64,
                                    c_int64, c_int64, POINTER(ctypes.c_double)]),
    "vikt_prune_remove": (c_int64, [Model, c_char_p]),
    "vikt_prune_mask": (POINTER(ctypes.c_uint8), [Tensor]),
    "vikt_prune_count": (c_int64, [Model, c_char_p, I64P, I64P]),
    "vikt_prune_report": (c_int64, [Model, POINTER(ctypes.c_char), c_size_t]),
    # ops
    "vikt_add": (Tensor, [Model, Tensor, Tensor]),
    "vikt_sub": (Tensor, [Model, Tensor, Tensor]),
    "vikt_mul": (Tensor, [Model, Tensor, Tensor]),
    "vikt_div": (Tensor, [Model, Tensor, Tensor]),
    "vikt_matmul": (Tensor, [Model, Tensor, Tensor]),
    "vikt_matmul_t": (Tensor, [Model, Tensor, Tensor, c_int, c_int]),
    "vikt_transpose": (Tensor, [Model, Tensor]),
    "vikt_reshape": (Tensor, [Model, Tensor, c_int, I64P]),
    "vikt_concat": (Tensor, [Model, c_int, POINTER(Tensor), c_int]),
    "vikt_slice": (Tensor, [Model, Tensor, c_int, c_int64, c_int64]),
    "vikt_sum": (Tensor, [Model, Tensor]),
    "vikt_mean": (Tensor, [Model, Tensor]),
    "vikt_sum_axis": (Tensor, [Model, Tensor, c_int, c_int]),
    "vikt_mean_axis": (Tensor, [Model, Tensor, c_int, c_int]),
    "vikt_scale": (Tensor, [Model, Tensor, c_float]),
    "vikt_exp": (Tensor, [Model, Tensor]),
    "vikt_log": (Tensor, [Model, Tensor]),
    "vikt_sqrt": (Tensor, [Model, Tensor]),
    "vikt_square": (Tensor, [Model, Tensor]),
    "vikt_relu": (Tensor, [Model, Tensor]),
    "vikt_leaky_relu": (Tensor, [Model, Tensor, c_float]),
    "vikt_sigmoid": (Tensor, [Model, Tensor]),
    "vikt_tanh": (Tensor, [Model, Tensor]),
    "vikt_gelu": (Tensor, [Model, Tensor]),
    "vikt_softmax": (Tensor, [Model, Tensor]),
    "vikt_log_softmax": (Tensor, [Model, Tensor]),
    "vikt_dropout": (Tensor, [Model, Tensor, c_float]),
    "vikt_mse_loss": (Tensor, [Model, Tensor, Tensor]),
    "vikt_bce_with_logits_loss": (Tensor, [Model, Tensor, Tensor]),
    "vikt_cross_entropy_loss": (Tensor, [Model, Tensor, POINTER(c_int32)]),
    "vikt_hinge_loss": (Tensor, [Model, Tensor, Tensor]),
    "vikt_permute": (Tensor, [Model, Tensor, POINTER(c_int)]),
    "vikt_gather_rows": (Tensor, [Model, Tensor, POINTER(c_int32), c_int64]),
    "vikt_scatter_rows": (Tensor, [Model, Tensor, POINTER(c_int32), c_int64]),
    "vikt_causal_mask": (Tensor, [Model, Tensor]),
    "vikt_max_pool2d": (Tensor, [Model, Tensor, c_int64, c_int64]),
    "vikt_avg_pool2d": (Tensor, [Model, Tensor, c_int64, c_int64]),
    "vikt_flatten": (Tensor, [Model, Tensor]),
    # layers
    "vikt_dense": (Tensor, [Model, c_char_p, Tensor, c_int64]),
    "vikt_conv2d": (Tensor, [Model, c_char_p, Tensor, c_int64, c_int64, c_int64, c_int64, c_int64]),
    "vikt_embedding": (Tensor, [Model, c_char_p, POINTER(c_int32), c_int, I64P, c_int64, c_int64]),
    "vikt_layer_norm": (Tensor, [Model, c_char_p, Tensor, c_float]),
    "vikt_batch_norm": (Tensor, [Model, c_char_p, Tensor, c_float, c_float]),
    "vikt_lstm": (Tensor, [Model, c_char_p, Tensor, c_int64, Tensor, Tensor, POINTER(Tensor),
                           POINTER(Tensor)]),
    "vikt_gru": (Tensor, [Model, c_char_p, Tensor, c_int64, Tensor, POINTER(Tensor)]),
    "vikt_attention": (Tensor, [Model, c_char_p, Tensor, c_int64, c_int]),
    "vikt_transformer_block": (Tensor, [Model, c_char_p, Tensor, c_int64, c_int64, c_int]),
    "vikt_moe": (Tensor, [Model, c_char_p, Tensor, c_int64, c_int64, c_int, POINTER(Tensor)]),
    # adapters
    "vikt_lora_attach": (c_int64, [Model, c_char_p, c_int64, c_float, c_float]),
    "vikt_lora_merge": (c_int64, [Model]),
    "vikt_lora_unmerge": (c_int64, [Model]),
    "vikt_lora_save": (c_int, [Model, c_char_p]),
    "vikt_lora_load": (c_int64, [Model, c_char_p]),
    "vikt_adapter_attach": (c_int64, [Model, c_char_p, c_int64, c_int]),
    # kernels and threads
    "vikt_gemm_isa": (c_char_p, []),
    "vikt_set_num_threads": (c_int, [Model, c_int]),
    "vikt_num_threads": (c_int, [Model]),
    # optimizers
    "vikt_optimizer_create": (c_int, [Model, vikt_optim_kind, c_float, POINTER(Optimizer)]),
    "vikt_sgd_create": (c_int, [Model, c_float, POINTER(Optimizer)]),
    "vikt_adam_create": (c_int, [Model, c_float, POINTER(Optimizer)]),
    "vikt_optimizer_set": (c_int, [Optimizer, vikt_optim_param, ctypes.c_double]),
    "vikt_optimizer_get": (c_int, [Optimizer, vikt_optim_param, POINTER(ctypes.c_double)]),
    "vikt_optimizer_step": (c_int, [Optimizer]),
    "vikt_optimizer_destroy": (None, [Optimizer]),
    # statistics
    "vikt_stats_compute": (c_int, [F32P, c_int64, POINTER(vikt_stats)]),
    "vikt_histogram": (c_int, [F32P, c_int64, ctypes.c_double, ctypes.c_double, c_int64, I64P,
                               I64P, I64P, I64P]),
    "vikt_param_stats": (c_int, [Model, c_char_p, c_int, POINTER(vikt_stats)]),
    "vikt_grad_norms": (c_int, [Model, DOUBLEP, c_int64, DOUBLEP]),
    "vikt_update_tracker_create": (c_int, [Model, POINTER(UpdateTracker)]),
    "vikt_update_tracker_snapshot": (c_int, [UpdateTracker]),
    "vikt_update_tracker_ratios": (c_int, [UpdateTracker, DOUBLEP, c_int64]),
    "vikt_update_tracker_destroy": (None, [UpdateTracker]),
    "vikt_topk_abs": (c_int64, [F32P, c_int64, c_int64, I64P, F32P]),
    "vikt_unravel_index": (c_int, [c_int64, c_int, I64P, I64P]),
    "vikt_check_finite": (c_int, [Model, c_int]),
    "vikt_set_anomaly_mode": (c_int, [Model, c_int]),
    "vikt_anomaly_mode": (c_int, [Model]),
    "vikt_gap_tracker_create": (c_int, [Model, c_int64, ctypes.c_double, POINTER(GapTracker)]),
    "vikt_gap_tracker_add": (c_int, [GapTracker, ctypes.c_double, ctypes.c_double]),
    "vikt_gap_tracker_state": (c_int, [GapTracker, DOUBLEP, DOUBLEP, DOUBLEP]),
    "vikt_gap_tracker_destroy": (None, [GapTracker]),
    # files
    "vikt_save": (c_int, [Model, c_char_p]),
    "vikt_load": (c_int, [Model, c_char_p, c_int]),
    "vikt_load_buffer": (c_int, [Model, c_void_p, c_size_t, c_int]),
    "vikt_load_report": (c_int64, [Model, POINTER(ctypes.c_char), c_size_t]),
    "vikt_load_report_count": (c_int64, [Model, c_int]),
    # data
    "vikt_dataset_create": (c_int, [Model, c_int64, c_int, POINTER(c_int64), POINTER(c_float),
                                    POINTER(c_int32), POINTER(c_float), c_int64,
                                    POINTER(Dataset)]),
    "vikt_dataset_load_csv": (c_int, [Model, c_char_p, c_int, c_int, c_int, c_int64,
                                      POINTER(Dataset)]),
    "vikt_dataset_load_idx": (c_int, [Model, c_char_p, c_char_p, POINTER(Dataset)]),
    "vikt_dataset_destroy": (None, [Dataset]),
    "vikt_dataset_size": (c_int64, [Dataset]),
    "vikt_dataset_feature_shape": (c_int, [Dataset, POINTER(c_int64)]),
    "vikt_dataset_num_classes": (c_int64, [Dataset]),
    "vikt_dataset_target_width": (c_int64, [Dataset]),
    "vikt_dataset_shuffle": (c_int, [Dataset]),
    "vikt_dataset_split": (c_int, [Dataset, c_int64, POINTER(Dataset), POINTER(Dataset)]),
    "vikt_dataset_scale": (c_int, [Dataset, c_float, c_float]),
    "vikt_dataset_copy_batch": (c_int, [Dataset, c_int64, c_int64, POINTER(c_float),
                                        POINTER(c_int32), POINTER(c_float)]),
    "vikt_dataset_input": (Tensor, [Dataset, c_int64, c_int64]),
    "vikt_dataset_target_input": (Tensor, [Dataset, c_int64, c_int64]),
    # training
    "vikt_trainer_create": (c_int, [Model, Optimizer, vikt_forward_fn, c_void_p,
                                    POINTER(Trainer)]),
    "vikt_trainer_destroy": (None, [Trainer]),
    "vikt_trainer_set": (c_int, [Trainer, c_int, ctypes.c_double]),
    "vikt_trainer_get": (c_int, [Trainer, c_int, POINTER(ctypes.c_double)]),
    "vikt_trainer_set_output": (c_int, [Trainer, vikt_write_fn, c_void_p]),
    "vikt_trainer_set_callback": (c_int, [Trainer, vikt_fit_callback_fn, c_void_p]),
    "vikt_trainer_set_log": (c_int, [Trainer, c_char_p]),
    "vikt_trainer_set_penalty": (c_int, [Trainer, vikt_penalty_fn, c_void_p]),
    "vikt_trainer_fit": (c_int, [Trainer, Dataset, Dataset]),
    "vikt_trainer_evaluate": (c_int, [Trainer, Dataset, POINTER(ctypes.c_double),
                                      POINTER(ctypes.c_double)]),
    # continual learning
    "vikt_ewc_create": (c_int, [Model, POINTER(Ewc)]),
    "vikt_ewc_destroy": (None, [Ewc]),
    "vikt_ewc_accumulate": (c_int, [Ewc]),
    "vikt_ewc_accumulate_dataset": (c_int64, [Ewc, Dataset, vikt_forward_fn, c_void_p, c_int,
                                              c_int64]),
    "vikt_ewc_consolidate": (c_int, [Ewc, c_float]),
    "vikt_ewc_penalty": (Tensor, [Ewc, c_float]),
    "vikt_ewc_fisher": (POINTER(c_float), [Ewc, Tensor]),
    "vikt_ewc_anchor": (POINTER(c_float), [Ewc, Tensor]),
    "vikt_ewc_pending": (c_int64, [Ewc]),
    # federated averaging
    "vikt_fedavg": (c_int, [Model, POINTER(Model), POINTER(ctypes.c_double), c_int64]),
    "vikt_fedavg_files": (c_int, [Model, POINTER(c_char_p), POINTER(ctypes.c_double), c_int64]),
    "vikt_checkpoint_save": (c_int, [Model, Optimizer, c_char_p]),
    "vikt_checkpoint_load": (c_int, [Model, Optimizer, c_char_p]),
}

# Names that must NOT be reachable: hidden helpers localized in the archive.
INTERNAL = ["vikt__gemm", "vikt__gemm_scalar", "vikt__apply", "vikt__fail",
            "vikt__alloc", "vikt__free", "vikt__default_allocator", "vikt__grad",
            "vikt__step_tensor", "vikt__rng_normal"]


NOT_EXPORTED = []  # declared names the library does not export


def load():
    path = os.environ.get("VIKT_SO")
    if not path:
        sys.exit("test_ctypes.py: set VIKT_SO to the path of libvikt.so")
    lib = ctypes.CDLL(os.path.abspath(path))
    for name, (res, args) in SIGNATURES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            NOT_EXPORTED.append(name)  # a test reports it; calls raise AttributeError
            continue
        fn.restype = res
        fn.argtypes = args
    return lib


def header_functions():
    """{name: number of parameters} of every VIKT_API function in vikt.h."""
    text = HEADER.read_text(encoding="utf-8")
    out = {}
    for m in re.finditer(r"^VIKT_API\b[^;{]*?\b(vikt_\w+)\s*\(([^)]*)\)\s*;", text, re.M):
        params = " ".join(m.group(2).split())
        out[m.group(1)] = 0 if params in ("void", "") else params.count(",") + 1
    return out


# --------------------------------------------------------------- helpers ---

def shape(*dims):
    return (c_int64 * max(len(dims), 1))(*dims)


def floats(*vals):
    return (c_float * len(vals))(*vals)


def close(a, b, tol=1e-5):
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def errmsg(lib, m):
    return lib.vikt_model_errmsg(m).decode("utf-8")


class CountingAllocator:
    """A vikt_allocator whose hooks are Python callbacks. Keeps every block
    alive in a dict, checks ud, alignment and the size given back to free,
    and can be told to fail after a number of successful allocations."""

    def __init__(self, fail_after=None):
        self.live = {}  # aligned address -> (buffer, size)
        self.allocs = 0
        self.frees = 0
        self.problems = []  # exceptions inside callbacks are swallowed by ctypes
        self.fail_after = fail_after
        self.token = ctypes.c_int(0x5EED)  # ud points at it
        self.ud = ctypes.addressof(self.token)
        # The CFUNCTYPE objects must outlive every model using them.
        self._alloc = vikt_alloc_fn(self._alloc_cb)
        self._free = vikt_free_fn(self._free_cb)
        self.struct = vikt_allocator(self._alloc, self._free, self.ud)

    def _alloc_cb(self, ud, size, align):
        if ud != self.ud:
            self.problems.append(f"alloc: ud {ud!r} != {self.ud:#x}")
        if size == 0 or align == 0 or align & (align - 1) or align > 64:
            self.problems.append(f"alloc: bad size/align {size}/{align}")
            return None
        if self.fail_after is not None and self.allocs >= self.fail_after:
            return None
        buf = (ctypes.c_char * (size + align))()
        addr = ctypes.addressof(buf)
        aligned = (addr + align - 1) & ~(align - 1)
        self.live[aligned] = (buf, size)
        self.allocs += 1
        return aligned

    def _free_cb(self, ud, ptr, size):
        if ud != self.ud:
            self.problems.append(f"free: ud {ud!r} != {self.ud:#x}")
        entry = self.live.pop(ptr, None)
        if entry is None:
            self.problems.append(f"free: unknown pointer {ptr!r}")
            return
        if entry[1] != size:
            self.problems.append(f"free: size {size} != allocated {entry[1]}")
        self.frees += 1


# ----------------------------------------------------------------- tests ---

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


@test
def declarations_match_header(lib):
    declared = set(SIGNATURES)
    in_header = header_functions()
    expect(len(in_header) > 50, f"found only {len(in_header)} VIKT_API functions in {HEADER}")
    missing = sorted(set(in_header) - declared)
    extra = sorted(declared - set(in_header))
    expect(not missing, f"in vikt.h but not declared here: {missing}")
    expect(not extra, f"declared here but not in vikt.h: {extra}")
    arity = [f"{n}: header {k}, declared {len(SIGNATURES[n][1])}"
             for n, k in in_header.items() if len(SIGNATURES[n][1]) != k]
    expect(not arity, f"parameter counts differ: {arity}")


@test
def declared_functions_exported(lib):
    expect(not NOT_EXPORTED, f"declared in vikt.h but not exported: {NOT_EXPORTED}")


@test
def version_matches_header(lib):
    text = HEADER.read_text(encoding="utf-8")
    parts = [re.search(rf"#define VIKT_VERSION_{p}\s+(\d+)", text).group(1)
             for p in ("MAJOR", "MINOR", "PATCH")]
    got = lib.vikt_version().decode()
    expect(got == ".".join(parts), f"vikt_version() = {got!r}, header says {'.'.join(parts)}")


@test
def strerror(lib):
    expect(lib.vikt_strerror(-2) == b"out of memory",
           f"vikt_strerror(-2) = {lib.vikt_strerror(-2)!r}")
    expect(lib.vikt_strerror(0) == b"success", "vikt_strerror(0)")
    expect(lib.vikt_strerror(12345) == b"unknown status", "vikt_strerror(12345)")
    # Every row of VIKT_STATUS_TABLE.
    text = HEADER.read_text(encoding="utf-8")
    rows = re.findall(r'X\((VIKT_\w+),\s*(-?\d+),\s*"([^"]*)"\)', text)
    expect(len(rows) >= 9, f"status table: {len(rows)} rows")
    for name, value, desc in rows:
        got = lib.vikt_strerror(int(value)).decode()
        expect(got == desc, f"vikt_strerror({name}) = {got!r}, want {desc!r}")


@test
def forward_backward_gradient(lib):
    m = Model()
    expect(lib.vikt_model_create(None, 42, ctypes.byref(m)) == VIKT_OK and m, "model_create")
    try:
        w = lib.vikt_param(m, b"w", 2, shape(1, 1), VIKT_INIT_ZEROS)
        b = lib.vikt_param(m, b"b", 1, shape(1), VIKT_INIT_ZEROS)
        expect(w and b, "vikt_param returned NULL: " + errmsg(lib, m))
        expect(lib.vikt_tensor_name(w) == b"w", "vikt_tensor_name")
        expect(lib.vikt_tensor_requires_grad(w) == 1, "params require a gradient")
        expect(lib.vikt_param_count(m) == 2 and lib.vikt_model_num_params(m) == 2, "counts")
        expect(ctypes.addressof(lib.vikt_param_find(m, b"b").contents)
               == ctypes.addressof(b.contents), "vikt_param_find")
        expect(lib.vikt_tensor_copy_in(w, floats(3.0), 1) == VIKT_OK, "copy_in w")
        expect(lib.vikt_tensor_copy_in(b, floats(0.5), 1) == VIKT_OK, "copy_in b")

        expect(lib.vikt_step_begin(m) == VIKT_OK, "step_begin")
        expect(lib.vikt_zero_grad(m) == VIKT_OK, "zero_grad")
        x = lib.vikt_input(m, 2, shape(2, 1), floats(1.0, 2.0))
        y = lib.vikt_input(m, 2, shape(2, 1), floats(1.0, 3.0))
        pred = lib.vikt_add(m, lib.vikt_matmul(m, x, w), b)
        loss = lib.vikt_mse_loss(m, pred, y)
        expect(loss, "loss is NULL: " + errmsg(lib, m))
        dims = shape(0, 0, 0, 0)
        expect(lib.vikt_tensor_shape(pred, dims) == 2 and list(dims[:2]) == [2, 1], "pred shape")
        expect(lib.vikt_tensor_rank(loss) == 0 and lib.vikt_tensor_numel(loss) == 1, "loss rank")
        # pred = [3.5, 6.5], diff = [2.5, 3.5], loss = (6.25 + 12.25) / 2
        lv = lib.vikt_tensor_data(loss)[0]
        expect(close(lv, 9.25), f"loss {lv} != 9.25")
        expect(lib.vikt_backward(m, loss) == VIKT_OK, "backward: " + errmsg(lib, m))
        # dL/dw = mean(2 * diff * x) = (5 + 14) / 2; dL/db = mean(2 * diff) = 6
        gw = lib.vikt_tensor_grad(w)
        gb = lib.vikt_tensor_grad(b)
        expect(gw and gb, "gradients are NULL")
        expect(close(gw[0], 9.5), f"dL/dw = {gw[0]}, want 9.5")
        expect(close(gb[0], 6.0), f"dL/db = {gb[0]}, want 6.0")
        out = floats(0.0)
        expect(lib.vikt_tensor_copy_out(w, out, 1) == VIKT_OK and out[0] == 3.0, "copy_out")
        expect(lib.vikt_model_errcode(m) == VIKT_OK, "errcode after a clean step")
    finally:
        lib.vikt_model_destroy(m)


@test
def shape_error_message(lib):
    m = Model()
    expect(lib.vikt_model_create(None, 1, ctypes.byref(m)) == VIKT_OK, "model_create")
    try:
        a = lib.vikt_input(m, 2, shape(2, 3), None)
        b = lib.vikt_input(m, 2, shape(4, 5), None)
        expect(a and b, "inputs")
        r = lib.vikt_matmul(m, a, b)
        expect(not r, "matmul of 2x3 and 4x5 returned a tensor")
        expect(lib.vikt_model_errcode(m) == VIKT_ERR_SHAPE,
               f"errcode {lib.vikt_model_errcode(m)}, want VIKT_ERR_SHAPE")
        msg = errmsg(lib, m)
        for part in ("vikt_matmul", "2x3", "4x5"):
            expect(part in msg, f"{part!r} not in error message {msg!r}")
        # NULL propagates and the first error sticks.
        expect(not lib.vikt_add(m, r, a), "add(NULL, a) returned a tensor")
        lib.vikt_add(m, a, b)  # another shape error, must not replace the first
        expect(errmsg(lib, m) == msg, f"sticky error replaced: {errmsg(lib, m)!r}")
        lib.vikt_model_clear_error(m)
        expect(lib.vikt_model_errcode(m) == VIKT_OK and errmsg(lib, m) == "", "clear_error")
    finally:
        lib.vikt_model_destroy(m)


@test
def stats_struct_layout(lib):
    # [1, 2, 3, 4, 0, NaN, inf]: the struct crosses the boundary member by member.
    x = floats(1.0, 2.0, 3.0, 4.0, 0.0, float("nan"), float("inf"))
    s = vikt_stats()
    expect(lib.vikt_stats_compute(x, 7, ctypes.byref(s)) == VIKT_OK, "vikt_stats_compute")
    got = (s.count, s.finite_count, s.nan_count, s.inf_count, s.zero_count)
    expect(got == (7, 5, 1, 1, 1), f"counts {got}")
    expect(close(s.mean, 2.0) and close(s.std, 2.0 ** 0.5) and close(s.std_unbiased, 2.5 ** 0.5),
           f"mean {s.mean}, std {s.std}, std_unbiased {s.std_unbiased}")
    expect(s.min == 0.0 and s.max == 4.0 and close(s.l2_norm, 30.0 ** 0.5), "min, max, l2")
    expect(close(s.zero_fraction, 1.0 / 7), f"zero_fraction {s.zero_fraction}")
    expect(lib.vikt_stats_compute(x, -1, ctypes.byref(s)) == VIKT_ERR_ARG, "n < 0")


@test
def null_and_bad_arguments(lib):
    expect(lib.vikt_model_errcode(None) == VIKT_ERR_NULL, "errcode(NULL)")
    expect(lib.vikt_model_create(None, 0, None) == VIKT_ERR_NULL, "create(out=NULL)")
    expect(lib.vikt_tensor_rank(None) == -1, "rank(NULL)")
    lib.vikt_model_destroy(None)
    lib.vikt_optimizer_destroy(None)
    # An incomplete allocator is rejected and *out is set to NULL.
    half = vikt_allocator(vikt_alloc_fn(lambda ud, s, a: None), vikt_free_fn(), None)
    m = Model()
    rc = lib.vikt_model_create(ctypes.byref(half), 0, ctypes.byref(m))
    expect(rc == VIKT_ERR_ARG and not m, f"incomplete allocator: rc {rc}")
    # Typed handles: a tensor is not accepted where a model is expected.
    try:
        lib.vikt_model_errcode(Tensor())
    except ctypes.ArgumentError:
        pass
    else:
        raise AssertionError("a tensor pointer was accepted as a model")


@test
def internal_symbols_hidden(lib):
    for name in INTERNAL:
        try:
            getattr(lib, name)
        except AttributeError:
            continue
        raise AssertionError(f"internal symbol {name} is visible in the shared library")


@test
def dynamic_symbols_only_vikt(lib):
    nm = shutil.which(os.environ.get("NM", "nm"))
    if not nm:
        print("   (nm not found; dynamic symbol table not checked)")
        return
    res = subprocess.run([nm, "-D", "--defined-only", os.environ["VIKT_SO"]],
                         capture_output=True, text=True, check=True)
    names = {f[2] for f in (line.split() for line in res.stdout.splitlines()) if len(f) == 3}
    bad = sorted(n for n in names if not n.startswith("vikt_") or n.startswith("vikt__"))
    expect(not bad, f"non-public defined dynamic symbols: {bad}")
    want = set(header_functions())
    expect(names == want, f"exported set differs from vikt.h: only exported "
           f"{sorted(names - want)}, only in header {sorted(want - names)}")


@test
def freeze_and_summary(lib):
    m = Model()
    expect(lib.vikt_model_create(None, 3, ctypes.byref(m)) == VIKT_OK, "model_create")
    try:
        for name, dims in ((b"fc1.weight", (2, 3)), (b"fc1.bias", (2,)), (b"fc10.weight", (1, 3))):
            expect(lib.vikt_param(m, name, len(dims), shape(*dims), VIKT_INIT_ZEROS), name.decode())
        expect(lib.vikt_model_num_trainable(m) == 11, "num_trainable before freezing")
        rm = lib.vikt_buffer(m, b"bn1.running_mean", 1, shape(3), 0.25)
        expect(rm and lib.vikt_tensor_data(rm)[2] == 0.25, "vikt_buffer: " + errmsg(lib, m))
        expect(not lib.vikt_tensor_requires_grad(rm), "a buffer requires a gradient")
        expect(lib.vikt_buffer_count(m) == 1 and lib.vikt_param_count(m) == 3, "buffer counts")
        expect(ctypes.addressof(lib.vikt_buffer_at(m, 0).contents) == ctypes.addressof(rm.contents)
               and lib.vikt_buffer_find(m, b"bn1.running_mean"), "buffer_at / buffer_find")
        expect(not lib.vikt_buffer(m, b"fc1.bias", 1, shape(2), 0.0), "a buffer took a param's name")
        lib.vikt_model_clear_error(m)
        n = lib.vikt_param_freeze(m, b"fc1", 1)
        expect(n == 2, f"vikt_param_freeze('fc1') = {n}, want 2 (not fc10.weight)")
        expect(lib.vikt_model_num_trainable(m) == 3, "num_trainable after freezing fc1")
        expect(lib.vikt_param_freeze(m, b"nope", 1) == -6, "freeze of no match: VIKT_ERR_NOT_FOUND")
        lib.vikt_model_clear_error(m)
        # snprintf shape: measure with (NULL, 0), then fill; truncation keeps the NUL.
        need = lib.vikt_model_summary(m, None, 0)
        expect(need > 0, f"vikt_model_summary(NULL, 0) = {need}")
        buf = ctypes.create_string_buffer(need + 1)
        expect(lib.vikt_model_summary(m, buf, need + 1) == need, "summary length")
        text = buf.value.decode("utf-8")
        expect(len(buf.value) == need, f"summary wrote {len(buf.value)} bytes, said {need}")
        expect("fc1.weight" in text and "fc10.weight" in text, f"summary: {text!r}")
        small = ctypes.create_string_buffer(b"\xff" * 8, 8)
        expect(lib.vikt_model_summary(m, small, 8) == need and small.raw[7] == 0,
               "truncated summary must return the full length and end in NUL")
    finally:
        lib.vikt_model_destroy(m)


@test
def pruning(lib):
    VIKT_PRUNE_GLOBAL = 1
    m = Model()
    expect(lib.vikt_model_create(None, 3, ctypes.byref(m)) == VIKT_OK, "model_create")
    try:
        w = lib.vikt_param(m, b"fc.weight", 2, shape(2, 4), VIKT_INIT_ZEROS)
        b = lib.vikt_param(m, b"fc.bias", 1, shape(2), VIKT_INIT_ZEROS)
        for i, v in enumerate((0.5, -3.0, 0.25, 2.0, -1.0, 0.75, 4.0, -0.125)):
            lib.vikt_tensor_data(w)[i] = v
        expect(lib.vikt_prune_magnitude(m, None, 0.5, VIKT_PRUNE_GLOBAL) == 1,
               "prune_magnitude: " + errmsg(lib, m))
        mask = lib.vikt_prune_mask(w)
        expect([mask[i] for i in range(8)] == [0, 1, 0, 1, 1, 0, 1, 0], "mask of the 4 smallest")
        expect(not lib.vikt_prune_mask(b), "a bias was pruned")
        zeros, numel = c_int64(), c_int64()
        expect(lib.vikt_prune_count(m, None, ctypes.byref(zeros), ctypes.byref(numel)) == 1
               and zeros.value == 4 and numel.value == 8, "prune_count")
        s = ctypes.c_double()
        expect(lib.vikt_prune_schedule(m, 10, 0.0, 0.8, 10, 5, 4, ctypes.byref(s)) == 1
               and s.value == 0.0, "schedule at t0")
        expect(lib.vikt_prune_magnitude(m, None, float("nan"), 0) == VIKT_ERR_ARG, "NaN sparsity")
        lib.vikt_model_clear_error(m)
        need = lib.vikt_prune_report(m, None, 0)
        buf = ctypes.create_string_buffer(need + 1)
        expect(lib.vikt_prune_report(m, buf, need + 1) == need and b"50.00%" in buf.value,
               f"prune_report: {buf.value!r}")
        expect(lib.vikt_prune_remove(m, None) == 1 and not lib.vikt_prune_mask(w), "prune_remove")
    finally:
        lib.vikt_model_destroy(m)


@test
def optimizer_hyperparameters(lib):
    VIKT_OPT_LR, VIKT_OPT_BETA1, VIKT_OPT_STEP = 0, 5, 22
    m = Model()
    expect(lib.vikt_model_create(None, 3, ctypes.byref(m)) == VIKT_OK, "model_create")
    opt = Optimizer()
    try:
        expect(lib.vikt_param(m, b"w", 2, shape(2, 2), VIKT_INIT_ZEROS), "param")
        expect(lib.vikt_adam_create(m, 0.001, ctypes.byref(opt)) == VIKT_OK and opt, "adam_create")
        v = ctypes.c_double()
        expect(lib.vikt_optimizer_get(opt, VIKT_OPT_LR, ctypes.byref(v)) == VIKT_OK, "get lr")
        expect(close(v.value, 0.001), f"lr read back as {v.value}")
        expect(lib.vikt_optimizer_set(opt, VIKT_OPT_BETA1, 0.8) == VIKT_OK, "set beta1")
        lib.vikt_optimizer_get(opt, VIKT_OPT_BETA1, ctypes.byref(v))
        expect(close(v.value, 0.8), f"beta1 read back as {v.value}")
        expect(lib.vikt_optimizer_set(opt, VIKT_OPT_BETA1, 1.5) == VIKT_ERR_ARG, "beta1 1.5")
        expect(lib.vikt_optimizer_set(opt, VIKT_OPT_STEP, 3) == VIKT_ERR_ARG, "read-only step")
        lib.vikt_optimizer_get(opt, VIKT_OPT_BETA1, ctypes.byref(v))
        expect(close(v.value, 0.8), "a rejected set changed the value")
    finally:
        lib.vikt_optimizer_destroy(opt)
        lib.vikt_model_destroy(m)


def train_line(lib, m, steps):
    """y = 2x + 1 with SGD; returns (w, b) or raises."""
    w = lib.vikt_param(m, b"w", 2, shape(1, 1), VIKT_INIT_ZEROS)
    b = lib.vikt_param(m, b"b", 1, shape(1), VIKT_INIT_ZEROS)
    opt = Optimizer()
    expect(lib.vikt_sgd_create(m, 0.05, ctypes.byref(opt)) == VIKT_OK and opt, "sgd_create")
    try:
        xs, ys = floats(0, 1, 2, 3), floats(1, 3, 5, 7)
        for _ in range(steps):
            lib.vikt_step_begin(m)
            lib.vikt_zero_grad(m)
            x = lib.vikt_input(m, 2, shape(4, 1), xs)
            y = lib.vikt_input(m, 2, shape(4, 1), ys)
            loss = lib.vikt_mse_loss(m, lib.vikt_add(m, lib.vikt_matmul(m, x, w), b), y)
            lib.vikt_backward(m, loss)
            lib.vikt_optimizer_step(opt)
        expect(lib.vikt_model_errcode(m) == VIKT_OK, "training: " + errmsg(lib, m))
        return lib.vikt_tensor_data(w)[0], lib.vikt_tensor_data(b)[0]
    finally:
        lib.vikt_optimizer_destroy(opt)


@test
def custom_allocator(lib):
    al = CountingAllocator()
    m = Model()
    rc = lib.vikt_model_create(ctypes.byref(al.struct), 7, ctypes.byref(m))
    expect(rc == VIKT_OK and m, f"model_create with allocator: {rc}")
    try:
        expect(al.allocs >= 1, "the model itself was not allocated through the hook")
        wv, bv = train_line(lib, m, 400)
        expect(abs(wv - 2) < 0.05 and abs(bv - 1) < 0.05, f"trained w={wv} b={bv}")
        t = Tensor()
        rc = lib.vikt_tensor_create(m, 2, shape(2, 2), floats(1, 2, 3, 4), 1, ctypes.byref(t))
        expect(rc == VIKT_OK and t, "tensor_create")
        before = al.frees
        lib.vikt_tensor_destroy(t)
        expect(al.frees > before, "vikt_tensor_destroy freed nothing through the hook")
    finally:
        lib.vikt_model_destroy(m)
    expect(not al.problems, "; ".join(al.problems[:5]))
    expect(al.allocs > 3, f"only {al.allocs} allocations went through the hook")
    expect(al.allocs == al.frees and not al.live,
           f"{al.allocs} allocations, {al.frees} frees, {len(al.live)} live")


@test
def allocator_failure(lib):
    # The very first allocation (the model) fails.
    al = CountingAllocator(fail_after=0)
    m = Model()
    rc = lib.vikt_model_create(ctypes.byref(al.struct), 0, ctypes.byref(m))
    expect(rc == VIKT_ERR_NOMEM and not m, f"create with a failing allocator: {rc}")
    # Fail at every later point of a short program; nothing may leak.
    n = 1
    while True:
        al = CountingAllocator(fail_after=n)
        m = Model()
        expect(lib.vikt_model_create(ctypes.byref(al.struct), 0, ctypes.byref(m)) == VIKT_OK,
               "create")
        w = lib.vikt_param(m, b"w", 2, shape(3, 3), 2)  # VIKT_INIT_XAVIER_UNIFORM
        x = lib.vikt_input(m, 2, shape(2, 3), floats(*range(6)))
        loss = lib.vikt_mean(m, lib.vikt_relu(m, lib.vikt_matmul(m, x, w)))
        rc = lib.vikt_backward(m, loss)
        err = lib.vikt_model_errcode(m)
        ok = rc == VIKT_OK and err == VIKT_OK
        if not ok:
            expect(err == VIKT_ERR_NOMEM, f"fail_after={n}: errcode {err}, {errmsg(lib, m)!r}")
        lib.vikt_model_destroy(m)
        expect(not al.problems, f"fail_after={n}: " + "; ".join(al.problems[:5]))
        expect(al.allocs == al.frees and not al.live,
               f"fail_after={n}: {al.allocs} allocations, {al.frees} frees")
        if ok:
            break
        n += 1
        expect(n < 1000, "never succeeded")


@test
def files_round_trip(lib):
    """vikt_save, vikt_load, vikt_load_buffer and the report through ctypes."""
    import tempfile
    VIKT_LOAD_STRICT, VIKT_LOAD_PARTIAL, VIKT_LOAD_LOADED, VIKT_LOAD_MISSING = 0, 1, 0, 2
    a, b = Model(), Model()
    expect(lib.vikt_model_create(None, 1, ctypes.byref(a)) == VIKT_OK, "model_create")
    expect(lib.vikt_model_create(None, 2, ctypes.byref(b)) == VIKT_OK, "model_create")
    try:
        w = lib.vikt_param(a, b"fc.weight", 2, shape(2, 3), VIKT_INIT_ZEROS)
        lib.vikt_tensor_copy_in(w, floats(1, 2, 3, 4, 5, 6), 6)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "m.safetensors").encode()
            expect(lib.vikt_save(a, path) == VIKT_OK, "vikt_save: " + errmsg(lib, a))
            expect(lib.vikt_load(b, path, VIKT_LOAD_STRICT) == VIKT_OK, "vikt_load: " + errmsg(lib, b))
            blob = open(path, "rb").read()
        got = lib.vikt_tensor_data(lib.vikt_param_find(b, b"fc.weight"))
        expect([got[i] for i in range(6)] == [1, 2, 3, 4, 5, 6], "loaded values")
        n = lib.vikt_load_report(b, None, 0)
        buf = ctypes.create_string_buffer(n + 1)
        expect(lib.vikt_load_report(b, buf, n + 1) == n and b"loaded 1 tensors" in buf.value, "report")
        expect(lib.vikt_load_report_count(b, VIKT_LOAD_LOADED) == 1, "count")
        lib.vikt_param(b, b"extra", 1, shape(2), VIKT_INIT_ZEROS)
        expect(lib.vikt_load_buffer(b, blob, len(blob), VIKT_LOAD_PARTIAL) == VIKT_OK, "load_buffer")
        expect(lib.vikt_load_report_count(b, VIKT_LOAD_MISSING) == 1, "missing count")
        expect(lib.vikt_load_buffer(b, blob[:-1], len(blob) - 1, VIKT_LOAD_PARTIAL) == -8,
               "a truncated buffer is VIKT_ERR_FORMAT")
    finally:
        lib.vikt_model_destroy(a)
        lib.vikt_model_destroy(b)


@test
def csv_dataset_and_its_errors(lib):
    """A CSV load through ctypes, and the FILE:LINE:COLUMN message of a bad one."""
    import tempfile
    m = Model()
    expect(lib.vikt_model_create(None, 1, ctypes.byref(m)) == VIKT_OK, "model_create")
    try:
        with tempfile.TemporaryDirectory() as d:
            good = os.path.join(d, "good.csv")
            bad = os.path.join(d, "bad.csv")
            open(good, "w").write("x,y,label\n1,2,0\n3,4,1\n")
            open(bad, "w").write("1,2,0\n3,oops,1\n")
            ds = Dataset()
            rc = lib.vikt_dataset_load_csv(m, good.encode(), 1, -1, ord(","), 0, ctypes.byref(ds))
            expect(rc == VIKT_OK and ds, "load_csv: " + errmsg(lib, m))
            expect(lib.vikt_dataset_size(ds) == 2 and lib.vikt_dataset_num_classes(ds) == 2, "size")
            xs = (c_float * 4)()
            ys = (c_int32 * 2)()
            expect(lib.vikt_dataset_copy_batch(ds, 0, 2, xs, ys, None) == VIKT_OK, "copy_batch")
            expect(list(xs) == [1, 2, 3, 4] and list(ys) == [0, 1], "values")
            lib.vikt_dataset_destroy(ds)
            rc = lib.vikt_dataset_load_csv(m, bad.encode(), 0, -1, ord(","), 0, ctypes.byref(ds))
            expect(rc == -8 and not ds, f"bad csv: {rc}")
            expect(f"{bad}:2:3: not a number".encode() in lib.vikt_model_errmsg(m), errmsg(lib, m))
    finally:
        lib.vikt_model_destroy(m)


@test
def trainer_fit_with_python_callbacks(lib):
    """vikt_trainer_fit with a forward function, a callback and a writer in Python."""
    VIKT_FIT_EPOCHS, VIKT_FIT_BATCH_SIZE, VIKT_FIT_PROGRESS, VIKT_FIT_GLOBAL_STEP = 0, 1, 8, 13
    VIKT_PROGRESS_PLAIN = 2
    m, opt, t, ds = Model(), Optimizer(), Trainer(), Dataset()
    expect(lib.vikt_model_create(None, 3, ctypes.byref(m)) == VIKT_OK, "model_create")
    xs = (c_float * 8)(-1, -1, -1, 1, 1, -1, 1, 1)
    ys = (c_int32 * 4)(0, 0, 1, 1)  # the sign of the first coordinate
    steps, text = [], []

    @vikt_forward_fn
    def forward(model, x, ud):
        return ctypes.cast(lib.vikt_dense(model, b"fc", x, 2), c_void_p).value

    @vikt_fit_callback_fn
    def callback(trainer, event, ud):
        steps.append(event)
        return 0

    @vikt_write_fn
    def write(ud, chars, n):
        text.append(ctypes.string_at(chars, n).decode())

    try:
        expect(lib.vikt_adam_create(m, 0.1, ctypes.byref(opt)) == VIKT_OK, "adam")
        expect(lib.vikt_dataset_create(m, 4, 1, shape(2), xs, ys, None, 0, ctypes.byref(ds))
               == VIKT_OK, "dataset: " + errmsg(lib, m))
        expect(lib.vikt_trainer_create(m, opt, forward, None, ctypes.byref(t)) == VIKT_OK, "trainer")
        for p, v in ((VIKT_FIT_EPOCHS, 30), (VIKT_FIT_BATCH_SIZE, 2),
                     (VIKT_FIT_PROGRESS, VIKT_PROGRESS_PLAIN)):
            expect(lib.vikt_trainer_set(t, p, v) == VIKT_OK, f"set {p}")
        lib.vikt_trainer_set_callback(t, callback, None)
        lib.vikt_trainer_set_output(t, write, None)
        expect(lib.vikt_trainer_fit(t, ds, None) == VIKT_OK, "fit: " + errmsg(lib, m))
        g = ctypes.c_double()
        lib.vikt_trainer_get(t, VIKT_FIT_GLOBAL_STEP, ctypes.byref(g))
        expect(g.value == 60 and steps.count(0) == 60 and steps.count(1) == 30, f"steps {g.value}")
        loss, acc = ctypes.c_double(), ctypes.c_double()
        expect(lib.vikt_trainer_evaluate(t, ds, ctypes.byref(loss), ctypes.byref(acc)) == VIKT_OK,
               "evaluate")
        expect(acc.value == 1.0 and loss.value < 0.3, f"loss {loss.value} accuracy {acc.value}")
        expect(len(text) == 30 and text[-1].startswith("epoch 30/30  loss "), repr(text[-1:]))
    finally:
        lib.vikt_trainer_destroy(t)
        lib.vikt_dataset_destroy(ds)
        lib.vikt_optimizer_destroy(opt)
        lib.vikt_model_destroy(m)


@test
def federated_average(lib):
    """vikt_fedavg over two models and vikt_fedavg_files over their files."""
    import tempfile
    models = [Model() for _ in range(3)]
    for i, m in enumerate(models):
        expect(lib.vikt_model_create(None, i + 1, ctypes.byref(m)) == VIKT_OK, "model_create")
    try:
        for m, vals in zip(models, ([0, 0], [1, 2], [4, 8])):
            w = lib.vikt_param(m, b"w", 1, shape(2), VIKT_INIT_ZEROS)
            lib.vikt_tensor_copy_in(w, floats(*vals), 2)
        dst, a, b = models
        clients = (Model * 2)(a, b)
        weights = (ctypes.c_double * 2)(3, 1)
        expect(lib.vikt_fedavg(dst, clients, weights, 2) == VIKT_OK, "vikt_fedavg: " + errmsg(lib, dst))
        got = lib.vikt_tensor_data(lib.vikt_param_find(dst, b"w"))
        expect([got[0], got[1]] == [1.75, 3.5], "weighted mean (3*1 + 4)/4, (3*2 + 8)/4")
        with tempfile.TemporaryDirectory() as d:
            paths = [os.path.join(d, n).encode() for n in ("a.safetensors", "b.safetensors")]
            expect(lib.vikt_save(a, paths[0]) == VIKT_OK and lib.vikt_save(b, paths[1]) == VIKT_OK, "save")
            lib.vikt_tensor_fill(lib.vikt_param_find(dst, b"w"), 0.0)
            cpaths = (c_char_p * 2)(*paths)
            expect(lib.vikt_fedavg_files(dst, cpaths, weights, 2) == VIKT_OK,
                   "vikt_fedavg_files: " + errmsg(lib, dst))
            expect([got[0], got[1]] == [1.75, 3.5], "files give the same mean")
        expect(lib.vikt_fedavg(dst, clients, weights, 0) == -4, "k = 0 is VIKT_ERR_ARG")
        lib.vikt_model_clear_error(dst)
    finally:
        for m in models:
            lib.vikt_model_destroy(m)


@test
def elastic_weight_consolidation(lib):
    """vikt_ewc_*: Fisher from a written gradient, the penalty λ/2·F·(θ − θ*)²
    and its gradient λ·F·(θ − θ*)."""
    m = Model()
    expect(lib.vikt_model_create(None, 1, ctypes.byref(m)) == VIKT_OK, "model_create")
    ewc = Ewc()
    try:
        w = lib.vikt_param(m, b"w", 1, shape(2), VIKT_INIT_ZEROS)
        expect(lib.vikt_ewc_create(m, ctypes.byref(ewc)) == VIKT_OK, "ewc_create")
        g = lib.vikt_tensor_grad(w)
        g[0], g[1] = 2.0, -1.0
        expect(lib.vikt_ewc_accumulate(ewc) == VIKT_OK and lib.vikt_ewc_pending(ewc) == 1,
               "accumulate")
        expect(lib.vikt_ewc_consolidate(ewc, 1.0) == VIKT_OK, "consolidate")
        f = lib.vikt_ewc_fisher(ewc, w)
        expect([f[0], f[1]] == [4.0, 1.0], "F = g²")
        lib.vikt_tensor_copy_in(w, floats(1, 3), 2)
        lib.vikt_zero_grad(m)
        lib.vikt_step_begin(m)
        pen = lib.vikt_ewc_penalty(ewc, 2.0)
        expect(lib.vikt_tensor_data(pen)[0] == 13.0, "2/2·(4·1 + 1·9)")
        expect(lib.vikt_backward(m, pen) == VIKT_OK, "backward")
        expect([g[0], g[1]] == [8.0, 6.0], "λ·F·(θ − θ*)")
        expect(not lib.vikt_ewc_penalty(ewc, -1.0), "λ < 0 is refused")
        lib.vikt_model_clear_error(m)
    finally:
        lib.vikt_ewc_destroy(ewc)
        lib.vikt_model_destroy(m)


@test
def statistics_for_trouble(lib):
    # Histogram, top-k and coordinates cross the boundary with int64 arrays.
    x = floats(0.0, 1.0, 2.0, 3.0, -5.0, float("nan"))
    counts = (c_int64 * 3)()
    below, above, bad = c_int64(), c_int64(), c_int64()
    expect(lib.vikt_histogram(x, 6, 0.0, 3.0, 3, counts, ctypes.byref(below),
                              ctypes.byref(above), ctypes.byref(bad)) == VIKT_OK, "histogram")
    expect(list(counts) == [1, 1, 2] and (below.value, above.value, bad.value) == (1, 0, 1),
           f"histogram {list(counts)} {below.value} {above.value} {bad.value}")
    idx, vals = (c_int64 * 2)(), (c_float * 2)()
    expect(lib.vikt_topk_abs(x, 5, 2, idx, vals) == 2, "topk count")
    expect(list(idx) == [4, 3] and list(vals) == [-5.0, 3.0], f"topk {list(idx)} {list(vals)}")
    coords = (c_int64 * 2)()
    expect(lib.vikt_unravel_index(5, 2, shape(2, 3), coords) == VIKT_OK and list(coords) == [1, 2],
           "unravel")
    m = POINTER(vikt_model)()
    expect(lib.vikt_model_create(None, 1, ctypes.byref(m)) == VIKT_OK, "create")
    try:
        w = lib.vikt_param(m, b"w", 1, shape(2), VIKT_INIT_ZEROS)
        lib.vikt_tensor_data(w)[1] = float("nan")
        s = vikt_stats()
        expect(lib.vikt_param_stats(m, b"w", 1, ctypes.byref(s)) == VIKT_OK and s.nan_count == 1,
               "param_stats")
        lib.vikt_tensor_grad(w)[0] = 3.0
        lib.vikt_tensor_grad(w)[1] = 4.0
        norms, total = (ctypes.c_double * 1)(), ctypes.c_double()
        expect(lib.vikt_grad_norms(m, norms, 1, ctypes.byref(total)) == VIKT_OK
               and norms[0] == 5.0 and total.value == 5.0, "grad norms")
        expect(lib.vikt_check_finite(m, 3) == -9, "check_finite finds the NaN")
        expect("parameter 'w'" in errmsg(lib, m), errmsg(lib, m))
        lib.vikt_model_clear_error(m)
        lib.vikt_tensor_data(w)[1] = 1.0
        tracker = UpdateTracker()
        expect(lib.vikt_update_tracker_create(m, ctypes.byref(tracker)) == VIKT_OK, "tracker")
        expect(lib.vikt_update_tracker_snapshot(tracker) == VIKT_OK, "snapshot")
        lib.vikt_tensor_data(w)[1] = 1.5
        ratios = (ctypes.c_double * 1)()
        expect(lib.vikt_update_tracker_ratios(tracker, ratios, 1) == VIKT_OK
               and close(ratios[0], 0.5), f"ratio {ratios[0]}")
        lib.vikt_update_tracker_destroy(tracker)
        expect(lib.vikt_set_anomaly_mode(m, 1) == VIKT_OK and lib.vikt_anomaly_mode(m) == 1,
               "anomaly mode")
        gap = GapTracker()
        expect(lib.vikt_gap_tracker_create(m, 2, 0.0, ctypes.byref(gap)) == VIKT_OK, "gap")
        lib.vikt_gap_tracker_add(gap, 1.0, 1.0)
        expect(lib.vikt_gap_tracker_add(gap, 0.5, 1.5) == 1, "overfitting flagged")
        ts, vs, g = ctypes.c_double(), ctypes.c_double(), ctypes.c_double()
        expect(lib.vikt_gap_tracker_state(gap, ctypes.byref(ts), ctypes.byref(vs),
                                          ctypes.byref(g)) == 1, "state")
        expect((ts.value, vs.value, g.value) == (-0.5, 0.5, 1.0), f"{ts.value} {vs.value} {g.value}")
        lib.vikt_gap_tracker_destroy(gap)
    finally:
        lib.vikt_model_destroy(m)


@test
def checkpoint_round_trip(lib):
    """vikt_checkpoint_save and vikt_checkpoint_load through ctypes: the
    weights and the optimizer's settings come back; NULL skips the state."""
    import tempfile
    VIKT_OPT_BETA1 = 5
    a, b = Model(), Model()
    oa, ob = Optimizer(), Optimizer()
    expect(lib.vikt_model_create(None, 1, ctypes.byref(a)) == VIKT_OK, "model_create")
    expect(lib.vikt_model_create(None, 2, ctypes.byref(b)) == VIKT_OK, "model_create")
    try:
        w = lib.vikt_param(a, b"w", 1, shape(3), VIKT_INIT_ZEROS)
        lib.vikt_tensor_copy_in(w, floats(1, 2, 3), 3)
        expect(lib.vikt_adam_create(a, 0.001, ctypes.byref(oa)) == VIKT_OK, "adam_create")
        expect(lib.vikt_adam_create(b, 0.5, ctypes.byref(ob)) == VIKT_OK, "adam_create")
        lib.vikt_optimizer_set(oa, VIKT_OPT_BETA1, 0.8)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "c.ckpt").encode()
            expect(lib.vikt_checkpoint_save(a, oa, path) == VIKT_OK, "save: " + errmsg(lib, a))
            expect(lib.vikt_checkpoint_load(b, ob, path) == VIKT_OK, "load: " + errmsg(lib, b))
            expect(lib.vikt_checkpoint_load(b, None, path) == VIKT_OK, "load without state")
        got = lib.vikt_tensor_data(lib.vikt_param_find(b, b"w"))
        expect([got[i] for i in range(3)] == [1, 2, 3], "loaded values")
        v = ctypes.c_double()
        lib.vikt_optimizer_get(ob, VIKT_OPT_BETA1, ctypes.byref(v))
        expect(v.value == 0.8, f"beta1 restored as {v.value}")
        expect(lib.vikt_checkpoint_load(b, ob, None) == -1, "NULL path is VIKT_ERR_NULL")
    finally:
        lib.vikt_optimizer_destroy(oa)
        lib.vikt_optimizer_destroy(ob)
        lib.vikt_model_destroy(a)
        lib.vikt_model_destroy(b)


def main():
    lib = load()
    passed = failed = 0
    for fn in TESTS:
        try:
            fn(lib)
        except Exception:  # noqa: BLE001 - report every failure and go on
            failed += 1
            print(f"FAIL {fn.__name__}")
            traceback.print_exc(limit=3)
        else:
            passed += 1
            print(f"ok   {fn.__name__}")
    print(f"ffi: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
