/**
 * @file vikt.h
 * @brief vikt — an embeddable C11 library for the learnable parameters of models.
 *
 * vikt creates, trains, inspects and stores weights and biases from plain C.
 * This header is the whole public contract; everything else is private.
 *
 * @section concepts Concepts
 *
 * - A **model** (`vikt_model`) is the context: the allocator, a sticky error,
 *   the seeded random generator, the named parameters, the tape and the
 *   per-step arena.
 * - A **tensor** (`vikt_tensor`) is float32, rank 0 to 4, contiguous and
 *   row-major. It is either *persistent* (a parameter, or made with
 *   vikt_tensor_create(); owned by the model until vikt_tensor_destroy() or
 *   vikt_model_destroy()) or a *step tensor* (an op result or made with
 *   vikt_input(); it lives in the step arena until the next vikt_step_begin()).
 * - **Ops** record themselves on the model's tape when gradients are enabled
 *   and an input requires a gradient; vikt_backward() replays the tape in
 *   reverse and accumulates gradients.
 * - A **dataset** (`vikt_dataset`) holds samples from caller arrays or from
 *   CSV and IDX files and hands out shuffled mini-batches (@ref data_guide);
 *   a **trainer** (`vikt_trainer`) runs the fit loop over datasets with
 *   validation, early stopping and progress (@ref fit_guide).
 *
 * @section errors Errors
 *
 * Fallible calls return `int`: ::VIKT_OK (0) or a negative ::vikt_status.
 * Ops return a tensor or NULL; a NULL input makes an op return NULL, so a
 * whole step can be checked once with vikt_model_errcode(). The first error
 * is kept (sticky) with a message naming the op and the shapes until
 * vikt_model_clear_error(). No function aborts, asserts or exits.
 *
 * @section threads Threads
 *
 * vikt has no mutable global state. Separate models may be used from separate
 * threads at the same time; one model and everything made from it belongs to
 * one thread at a time.
 *
 * @section files_io Files
 *
 * vikt_save() and vikt_load() keep parameters and buffers in safetensors
 * files that PyTorch reads and writes, crash-safely and with a strict,
 * fuzzed reader; vikt_checkpoint_save() and vikt_checkpoint_load() add the
 * optimizer's state and the random generator, so training resumes exactly;
 * see @ref file_format.
 *
 * @section example Example
 *
 * @code
 * #include <stdio.h>
 * #include <vikt.h>
 *
 * int main(void) {
 *     float xs[4] = {0, 1, 2, 3}, ys[4] = {1, 3, 5, 7};      // y = 2x + 1
 *     vikt_model *m;
 *     vikt_optimizer *opt;
 *     if (vikt_model_create(NULL, 42, &m) != VIKT_OK) return 1;
 *     vikt_tensor *w = vikt_param(m, "w", 2, (int64_t[]){1, 1}, VIKT_INIT_ZEROS);
 *     vikt_tensor *b = vikt_param(m, "b", 1, (int64_t[]){1}, VIKT_INIT_ZEROS);
 *     vikt_sgd_create(m, 0.05f, &opt);
 *     for (int step = 0; step < 500; step++) {
 *         vikt_step_begin(m);
 *         vikt_zero_grad(m);
 *         vikt_tensor *x = vikt_input(m, 2, (int64_t[]){4, 1}, xs);
 *         vikt_tensor *y = vikt_input(m, 2, (int64_t[]){4, 1}, ys);
 *         vikt_tensor *pred = vikt_add(m, vikt_matmul(m, x, w), b);
 *         vikt_backward(m, vikt_mse_loss(m, pred, y));
 *         vikt_optimizer_step(opt);
 *     }
 *     if (vikt_model_errcode(m)) fprintf(stderr, "%s\n", vikt_model_errmsg(m));
 *     printf("w=%.3f b=%.3f\n", vikt_tensor_data(w)[0], vikt_tensor_data(b)[0]);
 *     vikt_optimizer_destroy(opt);
 *     vikt_model_destroy(m);
 *     return 0;
 * }
 * @endcode
 */
#ifndef VIKT_H
#define VIKT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** @brief Marks a symbol exported from the library. */
#if defined(__GNUC__) || defined(__clang__)
#define VIKT_API __attribute__((visibility("default")))
#else
#define VIKT_API
#endif

/** @brief Major version: incompatible API changes. */
#define VIKT_VERSION_MAJOR 0
/** @brief Minor version: added functionality, backwards compatible. */
#define VIKT_VERSION_MINOR 1
/** @brief Patch version: bug fixes. */
#define VIKT_VERSION_PATCH 0

/**
 * @brief The library's version as "MAJOR.MINOR.PATCH".
 * @return A static string; never NULL.
 */
VIKT_API const char *vikt_version(void);

/**
 * @brief The status table: name, pinned value, description.
 *
 * One list generates the ::vikt_status enum and vikt_strerror(). Values never
 * change once released.
 */
#define VIKT_STATUS_TABLE(X)                                                   \
    X(VIKT_OK, 0, "success")                                                   \
    X(VIKT_ERR_NULL, -1, "a required argument is NULL")                        \
    X(VIKT_ERR_NOMEM, -2, "out of memory")                                     \
    X(VIKT_ERR_SHAPE, -3, "tensor shapes do not fit the operation")            \
    X(VIKT_ERR_ARG, -4, "an argument is out of range")                         \
    X(VIKT_ERR_STATE, -5, "the call is not valid in the current state")        \
    X(VIKT_ERR_NOT_FOUND, -6, "no such name")                                  \
    X(VIKT_ERR_IO, -7, "input/output error")                                   \
    X(VIKT_ERR_FORMAT, -8, "malformed data")                                   \
    X(VIKT_ERR_NONFINITE, -9, "a value is NaN or infinite")

/** @brief Result codes. ::VIKT_OK is zero; every error is negative. */
typedef enum vikt_status {
#define VIKT_STATUS_ENUM_(name, value, text) name = value,
    VIKT_STATUS_TABLE(VIKT_STATUS_ENUM_)
#undef VIKT_STATUS_ENUM_
    VIKT_STATUS_MIN_ = -9 /**< The most negative code in use. */
} vikt_status;

/**
 * @brief Describe a status code.
 * @param[in] status A ::vikt_status value.
 * @return A static English sentence; "unknown status" for an unknown code.
 */
VIKT_API const char *vikt_strerror(int status);

/** @brief Limits. */
enum { VIKT_MAX_RANK = 4 /**< Largest tensor rank. */ };

/** @brief The model: allocator, parameters, tape, arena, RNG, sticky error. */
typedef struct vikt_model vikt_model;
/** @brief A float32 tensor of rank 0 to 4. */
typedef struct vikt_tensor vikt_tensor;
/** @brief An update rule with its per-parameter state. */
typedef struct vikt_optimizer vikt_optimizer;

/**
 * @brief Allocation hook.
 * @param[in] ud    The allocator's user data.
 * @param[in] size  Bytes wanted (never 0).
 * @param[in] align A power of two, at most 64.
 * @return Memory aligned to @p align, or NULL when out of memory.
 */
typedef void *(*vikt_alloc_fn)(void *ud, size_t size, size_t align);
/**
 * @brief Release hook.
 * @param[in] ud   The allocator's user data.
 * @param[in] ptr  A pointer the alloc hook returned (never NULL).
 * @param[in] size The size it was allocated with.
 */
typedef void (*vikt_free_fn)(void *ud, void *ptr, size_t size);

/**
 * @brief A caller-chosen allocator (Lua's lua_Alloc shape). Passed by pointer
 *        and copied; the struct need not outlive the call, but the hooks and
 *        @c ud must stay valid until vikt_model_destroy() returns.
 */
typedef struct vikt_allocator {
    vikt_alloc_fn alloc; /**< Allocate aligned memory. */
    vikt_free_fn free;   /**< Release memory from @c alloc. */
    void *ud;            /**< Passed to both hooks. */
} vikt_allocator;

/* ------------------------------------------------------------------ model */

/**
 * @brief Create a model.
 * @param[in]  allocator The allocator (copied), or NULL for aligned malloc/free.
 * @param[in]  seed      Seed of the model's random generator (PCG32).
 * @param[out] out       Receives the model; set to NULL on failure.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL, ::VIKT_ERR_ARG (incomplete allocator) or
 *         ::VIKT_ERR_NOMEM.
 */
VIKT_API int vikt_model_create(const vikt_allocator *allocator, uint64_t seed,
                               vikt_model **out);

/**
 * @brief Destroy a model and every tensor made from it.
 *
 * Optimizers are not destroyed here: release each with
 * vikt_optimizer_destroy() first (afterwards it would use the freed model).
 * @param[in] m The model, or NULL (nothing happens).
 */
VIKT_API void vikt_model_destroy(vikt_model *m);

/**
 * @brief The first error recorded since the last vikt_model_clear_error().
 * @param[in] m The model.
 * @return ::VIKT_OK, a negative ::vikt_status, or ::VIKT_ERR_NULL for NULL @p m.
 */
VIKT_API int vikt_model_errcode(const vikt_model *m);

/**
 * @brief The message of the sticky error, naming the op and the shapes.
 * @param[in] m The model.
 * @return A string owned by the model, valid until the next call that
 *         changes the error; "" when there is none.
 */
VIKT_API const char *vikt_model_errmsg(const vikt_model *m);

/**
 * @brief Forget the sticky error.
 * @param[in] m The model, or NULL (nothing happens).
 */
VIKT_API void vikt_model_clear_error(vikt_model *m);

/**
 * @brief Reseed the model's random generator.
 * @param[in] m    The model.
 * @param[in] seed The new seed; the same seed gives the same numbers on every
 *                 platform.
 * @return ::VIKT_OK or ::VIKT_ERR_NULL.
 */
VIKT_API int vikt_model_seed(vikt_model *m, uint64_t seed);

/**
 * @brief Start a step: rewind the tape and the step arena.
 *
 * Every step tensor made since the previous call becomes invalid. The arena
 * keeps its memory, so a step of the same shapes as an earlier one allocates
 * nothing. The sticky error is kept.
 * @param[in] m The model.
 * @return ::VIKT_OK or ::VIKT_ERR_NULL.
 */
VIKT_API int vikt_step_begin(vikt_model *m);

/**
 * @brief Turn recording of ops on the tape on or off (no-grad / eval mode).
 * @param[in] m       The model.
 * @param[in] enabled Non-zero records ops (the default); zero records nothing.
 * @return ::VIKT_OK or ::VIKT_ERR_NULL.
 */
VIKT_API int vikt_set_grad_enabled(vikt_model *m, int enabled);

/**
 * @brief Whether ops are recorded.
 * @param[in] m The model.
 * @return 1 or 0; 0 for NULL.
 */
VIKT_API int vikt_grad_enabled(const vikt_model *m);

/**
 * @brief Switch between training (the default) and evaluation behaviour of
 *        ops such as dropout.
 * @param[in] m        The model.
 * @param[in] training Non-zero for training.
 * @return ::VIKT_OK or ::VIKT_ERR_NULL.
 */
VIKT_API int vikt_set_training(vikt_model *m, int training);

/**
 * @brief Whether the model is in training mode.
 * @param[in] m The model.
 * @return 1 or 0; 0 for NULL.
 */
VIKT_API int vikt_training(const vikt_model *m);

/**
 * @brief Set how many threads the model's matrix products use.
 *
 * The default is 1: the calling thread does all the work and the library
 * starts no thread. With @p n > 1 the model starts @p n - 1 worker threads
 * (POSIX threads) now and reuses them for every large enough product until
 * the count changes again or the model is destroyed; link with `-pthread`
 * (pkg-config's `vikt.pc` says so). Results are bitwise identical for every
 * thread count: the output is split among threads, never a sum. Workers
 * belong to the model, so the model still belongs to one calling thread at a
 * time.
 * @param[in] m The model.
 * @param[in] n 1 to 64 threads, the calling thread included.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL, ::VIKT_ERR_ARG (@p n out of range, or
 *         above 1 in a build without threads) or ::VIKT_ERR_NOMEM (the
 *         threads could not be started; the previous count is kept).
 */
VIKT_API int vikt_set_num_threads(vikt_model *m, int n);

/**
 * @brief The number of threads the model's matrix products use.
 * @param[in] m The model.
 * @return 1 to 64; 0 for NULL.
 */
VIKT_API int vikt_num_threads(const vikt_model *m);

/**
 * @brief The instruction set of the matrix-product kernel in use.
 *
 * Chosen once per process on first use: the fastest kernel the CPU and OS
 * support (on x86-64 read from CPUID, so one binary runs on any x86-64), or
 * the one the environment variable `VIKT_ISA` names (`scalar`, `avx2`,
 * `avx512` or `neon`) if this build has it and the CPU can run it; any other
 * value is ignored. Kernels differ in rounding, not in the contract.
 * @return A static string: "scalar", "avx2", "avx512" or "neon"; never NULL.
 */
VIKT_API const char *vikt_gemm_isa(void);

/**
 * @brief Replay the tape in reverse from a scalar loss.
 *
 * Gradients are added to those already held by persistent tensors, so several
 * backward calls accumulate until vikt_zero_grad(). Gradients of step tensors
 * are recomputed on every call.
 * @param[in] m    The model.
 * @param[in] loss A tensor with one element, made in this step.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL, ::VIKT_ERR_SHAPE (not one element),
 *         ::VIKT_ERR_STATE (loss does not require a gradient, or the model
 *         holds an error) or ::VIKT_ERR_NOMEM.
 */
VIKT_API int vikt_backward(vikt_model *m, vikt_tensor *loss);

/**
 * @brief Set the gradient of every parameter to zero.
 * @param[in] m The model.
 * @return ::VIKT_OK or ::VIKT_ERR_NULL.
 */
VIKT_API int vikt_zero_grad(vikt_model *m);

/* ---------------------------------------------------------------- tensors */

/**
 * @brief Create a persistent tensor owned by the model.
 * @param[in]  m             The model.
 * @param[in]  rank          0 to ::VIKT_MAX_RANK.
 * @param[in]  shape         @p rank sizes, each >= 0 (may be NULL for rank 0).
 * @param[in]  data          Values copied in, row-major; NULL for zeros.
 * @param[in]  requires_grad Non-zero to hold a gradient (allocated now).
 * @param[out] out           Receives the tensor; NULL on failure.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL, ::VIKT_ERR_SHAPE or ::VIKT_ERR_NOMEM.
 */
VIKT_API int vikt_tensor_create(vikt_model *m, int rank, const int64_t *shape,
                                const float *data, int requires_grad,
                                vikt_tensor **out);

/**
 * @brief Destroy a persistent tensor made by vikt_tensor_create().
 *
 * Parameters and step tensors are owned by the model and are not destroyed
 * here (the call does nothing for them).
 * @param[in] t The tensor, or NULL (nothing happens).
 */
VIKT_API void vikt_tensor_destroy(vikt_tensor *t);

/**
 * @brief A step tensor holding a copy of caller data.
 * @param[in] m     The model.
 * @param[in] rank  0 to ::VIKT_MAX_RANK.
 * @param[in] shape @p rank sizes.
 * @param[in] data  numel values, copied in; NULL for zeros.
 * @return The tensor (valid until the next vikt_step_begin()), or NULL.
 */
VIKT_API vikt_tensor *vikt_input(vikt_model *m, int rank, const int64_t *shape,
                                 const float *data);

/**
 * @brief A step tensor with every element equal to @p value.
 * @param[in] m     The model.
 * @param[in] rank  0 to ::VIKT_MAX_RANK.
 * @param[in] shape @p rank sizes.
 * @param[in] value The fill value.
 * @return The tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_full(vikt_model *m, int rank, const int64_t *shape,
                                float value);

/**
 * @brief A step tensor of zeros.
 * @param[in] m     The model.
 * @param[in] rank  0 to ::VIKT_MAX_RANK.
 * @param[in] shape @p rank sizes.
 * @return The tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_zeros(vikt_model *m, int rank, const int64_t *shape);

/**
 * @brief A step tensor of ones.
 * @param[in] m     The model.
 * @param[in] rank  0 to ::VIKT_MAX_RANK.
 * @param[in] shape @p rank sizes.
 * @return The tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_ones(vikt_model *m, int rank, const int64_t *shape);

/**
 * @brief A step tensor drawn from N(mean, std²) with the model's generator.
 * @param[in] m     The model.
 * @param[in] rank  0 to ::VIKT_MAX_RANK.
 * @param[in] shape @p rank sizes.
 * @param[in] mean  Mean.
 * @param[in] std   Standard deviation, >= 0.
 * @return The tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_randn(vikt_model *m, int rank, const int64_t *shape,
                                 float mean, float std);

/**
 * @brief A step tensor drawn uniformly from [lo, hi) with the model's generator.
 * @param[in] m     The model.
 * @param[in] rank  0 to ::VIKT_MAX_RANK.
 * @param[in] shape @p rank sizes.
 * @param[in] lo    Lower bound.
 * @param[in] hi    Upper bound, >= lo.
 * @return The tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_rand(vikt_model *m, int rank, const int64_t *shape,
                                float lo, float hi);

/**
 * @brief Set every element of a tensor to @p value.
 * @param[in,out] t     The tensor.
 * @param[in]     value The value.
 * @return ::VIKT_OK or ::VIKT_ERR_NULL.
 */
VIKT_API int vikt_tensor_fill(vikt_tensor *t, float value);

/**
 * @brief Fill a tensor from N(mean, std²) with its model's generator.
 * @param[in,out] t    The tensor.
 * @param[in]     mean Mean.
 * @param[in]     std  Standard deviation, >= 0 and finite.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL or ::VIKT_ERR_ARG.
 */
VIKT_API int vikt_tensor_fill_normal(vikt_tensor *t, float mean, float std);

/**
 * @brief Fill a tensor uniformly from [lo, hi) with its model's generator.
 * @param[in,out] t  The tensor.
 * @param[in]     lo Lower bound.
 * @param[in]     hi Upper bound, >= lo and finite.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL or ::VIKT_ERR_ARG.
 */
VIKT_API int vikt_tensor_fill_uniform(vikt_tensor *t, float lo, float hi);

/**
 * @brief The tensor's rank.
 * @param[in] t The tensor.
 * @return 0 to ::VIKT_MAX_RANK, or -1 for NULL.
 */
VIKT_API int vikt_tensor_rank(const vikt_tensor *t);

/**
 * @brief The size of one dimension.
 * @param[in] t    The tensor.
 * @param[in] axis 0 to rank-1; negative counts from the end.
 * @return The size, or -1 for NULL or an axis out of range.
 */
VIKT_API int64_t vikt_tensor_dim(const vikt_tensor *t, int axis);

/**
 * @brief Number of elements (1 for rank 0).
 * @param[in] t The tensor.
 * @return The count, or -1 for NULL.
 */
VIKT_API int64_t vikt_tensor_numel(const vikt_tensor *t);

/**
 * @brief Copy the shape out.
 * @param[in]  t     The tensor.
 * @param[out] shape At least ::VIKT_MAX_RANK slots; the first rank are set.
 * @return The rank, or ::VIKT_ERR_NULL.
 */
VIKT_API int vikt_tensor_shape(const vikt_tensor *t, int64_t *shape);

/**
 * @brief Borrow the tensor's values (row-major, numel floats).
 *
 * Valid while the tensor lives: for a step tensor until the next
 * vikt_step_begin(), for a persistent one until it or its model is destroyed.
 * Writing through the pointer changes the tensor.
 * @param[in] t The tensor.
 * @return The data, or NULL for NULL or an empty tensor.
 */
VIKT_API float *vikt_tensor_data(vikt_tensor *t);

/**
 * @brief Borrow the tensor's gradient, with the same lifetime as its data.
 * @param[in] t The tensor.
 * @return The gradient, or NULL when the tensor has none (it does not require
 *         one, or no backward pass has reached it in this step).
 */
VIKT_API float *vikt_tensor_grad(vikt_tensor *t);

/**
 * @brief Copy the values out.
 * @param[in]  t   The tensor.
 * @param[out] dst Receives numel floats.
 * @param[in]  n   Capacity of @p dst in floats; must be >= numel.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL or ::VIKT_ERR_ARG (too small).
 */
VIKT_API int vikt_tensor_copy_out(const vikt_tensor *t, float *dst, int64_t n);

/**
 * @brief Copy values in.
 * @param[in,out] t   The tensor.
 * @param[in]     src numel floats.
 * @param[in]     n   Number of floats in @p src; must equal numel.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL or ::VIKT_ERR_ARG.
 */
VIKT_API int vikt_tensor_copy_in(vikt_tensor *t, const float *src, int64_t n);

/**
 * @brief Whether backward computes a gradient for this tensor.
 * @param[in] t The tensor.
 * @return 1 or 0; 0 for NULL.
 */
VIKT_API int vikt_tensor_requires_grad(const vikt_tensor *t);

/**
 * @brief Make a leaf tensor require a gradient, or not.
 *
 * Only tensors not produced by an op (persistent tensors and vikt_input()
 * results) can be changed. A persistent tensor's gradient buffer is allocated
 * here.
 * @param[in,out] t             The tensor.
 * @param[in]     requires_grad Non-zero to require one.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL, ::VIKT_ERR_STATE (an op result) or
 *         ::VIKT_ERR_NOMEM.
 */
VIKT_API int vikt_tensor_set_requires_grad(vikt_tensor *t, int requires_grad);

/**
 * @brief The tensor's name.
 * @param[in] t The tensor.
 * @return The parameter name, or "" for unnamed tensors and NULL.
 */
VIKT_API const char *vikt_tensor_name(const vikt_tensor *t);

/* ------------------------------------------------------------- parameters */

/** @brief How a new parameter is initialized (fans as in torch.nn.init). */
typedef enum vikt_init {
    VIKT_INIT_ZEROS = 0,          /**< All zeros. */
    VIKT_INIT_ONES = 1,           /**< All ones. */
    VIKT_INIT_XAVIER_UNIFORM = 2, /**< U(±sqrt(6/(fan_in+fan_out))); rank >= 2. */
    VIKT_INIT_XAVIER_NORMAL = 3,  /**< N(0, 2/(fan_in+fan_out)); rank >= 2. */
    VIKT_INIT_KAIMING_UNIFORM = 4,/**< U(±sqrt(6/fan_in)) (ReLU gain); rank >= 2. */
    VIKT_INIT_KAIMING_NORMAL = 5, /**< N(0, 2/fan_in) (ReLU gain); rank >= 2. */
    VIKT_INIT_ORTHOGONAL = 6      /**< A (semi-)orthogonal matrix from the QR of a
                                       normal one, rows × (product of the rest), as
                                       torch.nn.init.orthogonal_; rank >= 2. */
} vikt_init;

/**
 * @brief Find or create a named parameter.
 *
 * The first call creates a persistent tensor that requires a gradient,
 * initialized with @p init from the model's generator; later calls with the
 * same name return it (the shape must match). fan_in is shape[1] times the
 * sizes after it, fan_out is shape[0] times the same (PyTorch's convention:
 * a dense weight is [out, in]).
 * @param[in] m     The model.
 * @param[in] name  A non-empty name such as "fc1.weight" (copied).
 * @param[in] rank  0 to ::VIKT_MAX_RANK.
 * @param[in] shape @p rank sizes.
 * @param[in] init  A ::vikt_init.
 * @return The parameter (owned by the model), or NULL.
 */
VIKT_API vikt_tensor *vikt_param(vikt_model *m, const char *name, int rank,
                                 const int64_t *shape, vikt_init init);

/**
 * @brief Look a parameter up by name.
 * @param[in] m    The model.
 * @param[in] name The name.
 * @return The parameter, or NULL when there is none (no error is recorded).
 */
VIKT_API vikt_tensor *vikt_param_find(vikt_model *m, const char *name);

/**
 * @brief Number of parameter tensors, in creation order.
 * @param[in] m The model.
 * @return The count, or -1 for NULL.
 */
VIKT_API int64_t vikt_param_count(const vikt_model *m);

/**
 * @brief The i-th parameter tensor in creation order.
 * @param[in] m The model.
 * @param[in] i 0 to vikt_param_count()-1.
 * @return The parameter, or NULL when out of range.
 */
VIKT_API vikt_tensor *vikt_param_at(vikt_model *m, int64_t i);

/**
 * @brief Total number of scalar parameters (the sum of every parameter's numel).
 * @param[in] m The model.
 * @return The count, or -1 for NULL.
 */
VIKT_API int64_t vikt_model_num_params(const vikt_model *m);

/**
 * @brief Find or create a named buffer: persistent state that is saved with
 *        the parameters but not trained (running statistics of batch norm).
 *
 * Buffers never require a gradient and are not counted as parameters. Names
 * are shared with parameters: a name cannot be both.
 * @param[in] m     The model.
 * @param[in] name  A non-empty name such as "bn1.running_mean" (copied).
 * @param[in] rank  0 to ::VIKT_MAX_RANK.
 * @param[in] shape @p rank sizes.
 * @param[in] value Every element's value when the buffer is created.
 * @return The buffer (owned by the model), or NULL.
 */
VIKT_API vikt_tensor *vikt_buffer(vikt_model *m, const char *name, int rank,
                                  const int64_t *shape, float value);

/**
 * @brief Look a buffer up by name.
 * @param[in] m    The model.
 * @param[in] name The name.
 * @return The buffer, or NULL when there is none (no error is recorded).
 */
VIKT_API vikt_tensor *vikt_buffer_find(vikt_model *m, const char *name);

/**
 * @brief Number of buffers, in creation order.
 * @param[in] m The model.
 * @return The count, or -1 for NULL.
 */
VIKT_API int64_t vikt_buffer_count(const vikt_model *m);

/**
 * @brief The i-th buffer in creation order.
 * @param[in] m The model.
 * @param[in] i 0 to vikt_buffer_count()-1.
 * @return The buffer, or NULL when out of range.
 */
VIKT_API vikt_tensor *vikt_buffer_at(vikt_model *m, int64_t i);

/**
 * @brief Number of scalar parameters that require a gradient (not frozen).
 * @param[in] m The model.
 * @return The count, or -1 for NULL.
 */
VIKT_API int64_t vikt_model_num_trainable(const vikt_model *m);

/**
 * @brief Freeze or unfreeze parameters by name or module prefix.
 *
 * @p pattern matches a parameter whose name equals it, or begins with it
 * followed by '.', so "fc1" matches "fc1.weight" and "fc1.bias" but not
 * "fc10.weight"; "" matches every parameter. A frozen parameter gets no
 * gradient and optimizers leave it unchanged.
 * @param[in] m       The model.
 * @param[in] pattern A name or prefix.
 * @param[in] frozen  Non-zero to freeze, zero to unfreeze.
 * @return The number of parameters matched (>= 1), ::VIKT_ERR_NULL,
 *         ::VIKT_ERR_NOT_FOUND (none matched) or ::VIKT_ERR_NOMEM.
 */
VIKT_API int64_t vikt_param_freeze(vikt_model *m, const char *pattern, int frozen);

/**
 * @brief Write a table of the parameters: name, shape, count, trainable, and
 *        the totals, like snprintf.
 * @param[in]  m    The model.
 * @param[out] buf  Receives at most @p size bytes, NUL-terminated; may be NULL
 *                  when @p size is 0.
 * @param[in]  size Capacity of @p buf.
 * @return The length of the whole table (excluding the NUL; it was truncated
 *         if this is >= @p size), or ::VIKT_ERR_NULL.
 */
VIKT_API int64_t vikt_model_summary(const vikt_model *m, char *buf, size_t size);

/* -------------------------------------------------------------------- ops */

/*
 * Elementwise binary ops broadcast like NumPy: shapes are aligned at the
 * right, and each dimension must be equal or 1 in one of the operands.
 */

/**
 * @brief a + b, broadcasting.
 * @param[in] m The model.
 * @param[in] a Left operand.
 * @param[in] b Right operand.
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_add(vikt_model *m, vikt_tensor *a, vikt_tensor *b);
/**
 * @brief a - b, broadcasting.
 * @param[in] m The model.
 * @param[in] a Left operand.
 * @param[in] b Right operand.
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_sub(vikt_model *m, vikt_tensor *a, vikt_tensor *b);
/**
 * @brief a * b elementwise, broadcasting.
 * @param[in] m The model.
 * @param[in] a Left operand.
 * @param[in] b Right operand.
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_mul(vikt_model *m, vikt_tensor *a, vikt_tensor *b);
/**
 * @brief a / b elementwise, broadcasting (IEEE: x/0 is ±inf or NaN).
 * @param[in] m The model.
 * @param[in] a Left operand.
 * @param[in] b Right operand.
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_div(vikt_model *m, vikt_tensor *a, vikt_tensor *b);

/**
 * @brief Matrix product of the last two dimensions.
 *
 * Shapes: [M,K]·[K,N] → [M,N]; [B,M,K]·[B,K,N] → [B,M,N];
 * [B,M,K]·[K,N] → [B,M,N] (the right operand shared by every batch).
 * @param[in] m The model.
 * @param[in] a Left operand, rank 2 or 3.
 * @param[in] b Right operand, rank 2 or 3.
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_matmul(vikt_model *m, vikt_tensor *a, vikt_tensor *b);

/**
 * @brief Matrix product with either operand's last two dimensions transposed:
 *        op(a)·op(b), without materializing the transpose.
 * @param[in] m           The model.
 * @param[in] a           Left operand, rank 2 or 3.
 * @param[in] b           Right operand, rank 2 or 3.
 * @param[in] transpose_a Non-zero to use aᵀ.
 * @param[in] transpose_b Non-zero to use bᵀ.
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_matmul_t(vikt_model *m, vikt_tensor *a, vikt_tensor *b,
                                    int transpose_a, int transpose_b);

/**
 * @brief Swap the last two dimensions (rank >= 2); a copy.
 * @param[in] m The model.
 * @param[in] a The tensor.
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_transpose(vikt_model *m, vikt_tensor *a);

/**
 * @brief The same values in another shape with the same number of elements.
 * @param[in] m     The model.
 * @param[in] a     The tensor.
 * @param[in] rank  0 to ::VIKT_MAX_RANK.
 * @param[in] shape @p rank sizes; one may be -1 (inferred).
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_reshape(vikt_model *m, vikt_tensor *a, int rank,
                                   const int64_t *shape);

/**
 * @brief Join tensors along an axis; all other dimensions must agree.
 * @param[in] m      The model.
 * @param[in] n      Number of tensors, >= 1.
 * @param[in] inputs @p n tensors of one rank (>= 1).
 * @param[in] axis   The axis; negative counts from the end.
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_concat(vikt_model *m, int n, vikt_tensor *const *inputs,
                                  int axis);

/**
 * @brief The elements start..start+length-1 along an axis.
 * @param[in] m      The model.
 * @param[in] a      The tensor (rank >= 1).
 * @param[in] axis   The axis; negative counts from the end.
 * @param[in] start  First index, 0 <= start <= dim.
 * @param[in] length Count, start+length <= dim.
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_slice(vikt_model *m, vikt_tensor *a, int axis,
                                 int64_t start, int64_t length);

/**
 * @brief Sum of all elements (a rank-0 tensor).
 * @param[in] m The model.
 * @param[in] a The tensor.
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_sum(vikt_model *m, vikt_tensor *a);
/**
 * @brief Mean of all elements (a rank-0 tensor).
 * @param[in] m The model.
 * @param[in] a The tensor (at least one element).
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_mean(vikt_model *m, vikt_tensor *a);
/**
 * @brief Sum along one axis.
 * @param[in] m       The model.
 * @param[in] a       The tensor (rank >= 1).
 * @param[in] axis    The axis; negative counts from the end.
 * @param[in] keepdim Non-zero keeps the axis with size 1.
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_sum_axis(vikt_model *m, vikt_tensor *a, int axis,
                                    int keepdim);
/**
 * @brief Mean along one axis.
 * @param[in] m       The model.
 * @param[in] a       The tensor (rank >= 1, the axis not empty).
 * @param[in] axis    The axis; negative counts from the end.
 * @param[in] keepdim Non-zero keeps the axis with size 1.
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_mean_axis(vikt_model *m, vikt_tensor *a, int axis,
                                     int keepdim);

/**
 * @brief a * s for a scalar s.
 * @param[in] m The model.
 * @param[in] a The tensor.
 * @param[in] s The factor.
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_scale(vikt_model *m, vikt_tensor *a, float s);
/**
 * @brief eˣ elementwise.
 * @param[in] m The model.
 * @param[in] a The tensor.
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_exp(vikt_model *m, vikt_tensor *a);
/**
 * @brief Natural logarithm elementwise.
 * @param[in] m The model.
 * @param[in] a The tensor.
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_log(vikt_model *m, vikt_tensor *a);
/**
 * @brief Square root elementwise.
 * @param[in] m The model.
 * @param[in] a The tensor.
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_sqrt(vikt_model *m, vikt_tensor *a);
/**
 * @brief x² elementwise.
 * @param[in] m The model.
 * @param[in] a The tensor.
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_square(vikt_model *m, vikt_tensor *a);
/**
 * @brief max(x, 0) elementwise (gradient 0 at x = 0).
 * @param[in] m The model.
 * @param[in] a The tensor.
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_relu(vikt_model *m, vikt_tensor *a);
/**
 * @brief x for x > 0, slope·x otherwise.
 * @param[in] m     The model.
 * @param[in] a     The tensor.
 * @param[in] slope The negative slope (PyTorch's default is 0.01).
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_leaky_relu(vikt_model *m, vikt_tensor *a, float slope);
/**
 * @brief 1 / (1 + e⁻ˣ) elementwise, stable for large |x|.
 * @param[in] m The model.
 * @param[in] a The tensor.
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_sigmoid(vikt_model *m, vikt_tensor *a);
/**
 * @brief Hyperbolic tangent elementwise.
 * @param[in] m The model.
 * @param[in] a The tensor.
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_tanh(vikt_model *m, vikt_tensor *a);
/**
 * @brief GELU, the exact form x·Φ(x) (PyTorch's default, not the tanh
 *        approximation).
 * @param[in] m The model.
 * @param[in] a The tensor.
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_gelu(vikt_model *m, vikt_tensor *a);
/**
 * @brief Softmax over the last axis (max-subtracted, stable).
 * @param[in] m The model.
 * @param[in] a The tensor (rank >= 1).
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_softmax(vikt_model *m, vikt_tensor *a);
/**
 * @brief Log-softmax over the last axis (max-subtracted, stable).
 * @param[in] m The model.
 * @param[in] a The tensor (rank >= 1).
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_log_softmax(vikt_model *m, vikt_tensor *a);
/**
 * @brief Inverted dropout: in training mode each element is zeroed with
 *        probability p and the rest scaled by 1/(1-p), drawn from the model's
 *        generator; in evaluation mode the input passes unchanged.
 * @param[in] m The model.
 * @param[in] a The tensor.
 * @param[in] p Drop probability, 0 <= p < 1.
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_dropout(vikt_model *m, vikt_tensor *a, float p);

/**
 * @brief Mean squared error, mean over all elements (a rank-0 tensor).
 * @param[in] m      The model.
 * @param[in] pred   Predictions.
 * @param[in] target Targets, the same shape.
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_mse_loss(vikt_model *m, vikt_tensor *pred,
                                    vikt_tensor *target);
/**
 * @brief Binary cross-entropy on logits, mean over all elements, computed
 *        stably as max(x,0) - x·t + log(1 + e^-|x|).
 * @param[in] m      The model.
 * @param[in] logits Logits.
 * @param[in] target Targets in [0, 1], the same shape.
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_bce_with_logits_loss(vikt_model *m, vikt_tensor *logits,
                                                vikt_tensor *target);
/**
 * @brief Softmax cross-entropy with integer class labels, mean over rows;
 *        fused with the log-softmax and stable for large logits.
 * @param[in] m      The model.
 * @param[in] logits [N, C] logits.
 * @param[in] labels N labels, each 0 <= label < C (copied).
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_cross_entropy_loss(vikt_model *m, vikt_tensor *logits,
                                              const int32_t *labels);
/**
 * @brief Hinge loss mean(max(0, 1 - t·x)) for targets t in {-1, +1}.
 * @param[in] m      The model.
 * @param[in] scores Scores.
 * @param[in] target Targets, the same shape.
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_hinge_loss(vikt_model *m, vikt_tensor *scores,
                                      vikt_tensor *target);

/* ------------------------------------------------------ ops for layers */

/**
 * @brief Reorder dimensions: output dimension i is input dimension perm[i]
 *        (a copy, like torch.permute followed by contiguous).
 * @param[in] m    The model.
 * @param[in] a    The tensor.
 * @param[in] perm rank(a) distinct axes 0..rank-1 (copied; may be NULL for rank 0).
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_permute(vikt_model *m, vikt_tensor *a, const int *perm);

/**
 * @brief Rows of a by index: out[i] = a[index[i]] along axis 0.
 * @param[in] m     The model.
 * @param[in] a     [R, ...] (rank >= 1).
 * @param[in] index @p n row numbers, each 0 <= index[i] < R, repeats allowed
 *                  (copied; may be NULL when @p n is 0).
 * @param[in] n     Number of rows to take, >= 0.
 * @return [n, ...], or NULL.
 */
VIKT_API vikt_tensor *vikt_gather_rows(vikt_model *m, vikt_tensor *a, const int32_t *index,
                                       int64_t n);

/**
 * @brief Sum rows into place: out = zeros [rows, ...] with out[index[i]] += src[i]
 *        (torch.index_add along axis 0); the inverse of vikt_gather_rows().
 * @param[in] m     The model.
 * @param[in] src   [n, ...] (rank >= 1).
 * @param[in] index n row numbers, each 0 <= index[i] < @p rows, repeats
 *                  adding up (copied; may be NULL when n is 0).
 * @param[in] rows  Number of output rows, >= 0.
 * @return [rows, ...], or NULL.
 */
VIKT_API vikt_tensor *vikt_scatter_rows(vikt_model *m, vikt_tensor *src, const int32_t *index,
                                        int64_t rows);

/**
 * @brief Causal mask over the last two dimensions [T, T]: elements above the
 *        diagonal (key j > query i) become −∞ and get no gradient.
 * @param[in] m      The model.
 * @param[in] scores Attention scores, rank >= 2, last two dimensions equal.
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_causal_mask(vikt_model *m, vikt_tensor *scores);

/**
 * @brief 2-D max pooling over [N, C, H, W] without padding; the gradient goes
 *        to the first maximum of each window (a NaN in a window is its
 *        maximum, as in PyTorch).
 * @param[in] m      The model.
 * @param[in] x      [N, C, H, W].
 * @param[in] kernel Window size, >= 1.
 * @param[in] stride Step, >= 1; 0 means @p kernel.
 * @return [N, C, (H−kernel)/stride+1, (W−kernel)/stride+1], or NULL.
 */
VIKT_API vikt_tensor *vikt_max_pool2d(vikt_model *m, vikt_tensor *x, int64_t kernel,
                                      int64_t stride);

/**
 * @brief 2-D average pooling over [N, C, H, W] without padding: each output
 *        is the sum of its kernel×kernel window divided by kernel².
 * @param[in] m      The model.
 * @param[in] x      [N, C, H, W].
 * @param[in] kernel Window size, >= 1.
 * @param[in] stride Step, >= 1; 0 means @p kernel.
 * @return [N, C, (H−kernel)/stride+1, (W−kernel)/stride+1], or NULL.
 */
VIKT_API vikt_tensor *vikt_avg_pool2d(vikt_model *m, vikt_tensor *x, int64_t kernel,
                                      int64_t stride);

/**
 * @brief Keep the first dimension and merge the rest: [N, ...] → [N, rest]
 *        (a copy, like torch.flatten(x, 1); [N] becomes [N, 1]).
 * @param[in] m The model.
 * @param[in] x A tensor of rank >= 1.
 * @return A step tensor, or NULL.
 */
VIKT_API vikt_tensor *vikt_flatten(vikt_model *m, vikt_tensor *x);

/* ----------------------------------------------------------------- layers */

/*
 * Layers own named parameters "<name>.<parameter>", created on the first call
 * with PyTorch's default initialization and found by name on later calls. A
 * parameter created beforehand with vikt_param() (any initializer) is used as
 * it is. Shapes and names follow torch.nn, so state can be exchanged.
 */

/**
 * @brief Dense (linear) layer: y = x·Wᵀ + b.
 *
 * Parameters: "<name>.weight" [out, in] and "<name>.bias" [out], both
 * U(−1/√in, 1/√in) (torch.nn.Linear).
 * @param[in] m            The model.
 * @param[in] name         Layer name, e.g. "fc1".
 * @param[in] x            [..., in], rank 1 to 3.
 * @param[in] out_features Output width, >= 1.
 * @return [..., out], or NULL.
 */
VIKT_API vikt_tensor *vikt_dense(vikt_model *m, const char *name, vikt_tensor *x,
                                 int64_t out_features);

/**
 * @brief 2-D convolution over NCHW input (cross-correlation, as torch.nn.Conv2d):
 *        y[n,o] = b[o] + Σ_c W[o,c] ⋆ x[n,c] with the given stride, zero
 *        padding and dilation (the same along both axes).
 *
 * Parameters: "<name>.weight" [out, in, k, k] and "<name>.bias" [out], both
 * U(−1/√(in·k·k), 1/√(in·k·k)). Computed as im2col + GEMM (on the model's
 * threads; with several, samples are spread over them); one column buffer of
 * C·k·k × H'·W' floats per thread in use lives in the step arena.
 * @param[in] m            The model.
 * @param[in] name         Layer name.
 * @param[in] x            [N, C, H, W].
 * @param[in] out_channels Output channels, >= 1.
 * @param[in] kernel       Kernel size k, >= 1.
 * @param[in] stride       Stride, >= 1.
 * @param[in] padding      Zero padding on each side, >= 0.
 * @param[in] dilation     Dilation, >= 1.
 * @return [N, out, H', W'] with H' = (H + 2·padding − dilation·(k−1) − 1)/stride + 1,
 *         or NULL.
 */
VIKT_API vikt_tensor *vikt_conv2d(vikt_model *m, const char *name, vikt_tensor *x,
                                  int64_t out_channels, int64_t kernel, int64_t stride,
                                  int64_t padding, int64_t dilation);

/**
 * @brief Embedding lookup: out[..., :] = W[id] (@p ids may be NULL when the
 *        id array is empty).
 *
 * Parameter: "<name>.weight" [num_embeddings, dim], N(0, 1) (torch.nn.Embedding).
 * The gradient of a row is the sum over every position holding its id (a
 * dense gradient, as torch.nn.Embedding with sparse=False).
 * @param[in] m              The model.
 * @param[in] name           Layer name.
 * @param[in] ids            Token ids, each 0 <= id < num_embeddings (copied).
 * @param[in] rank           Rank of the id array, 0 to 3.
 * @param[in] shape          @p rank sizes of the id array.
 * @param[in] num_embeddings Vocabulary size, >= 1.
 * @param[in] dim            Embedding width, >= 1.
 * @return [shape..., dim], or NULL.
 */
VIKT_API vikt_tensor *vikt_embedding(vikt_model *m, const char *name, const int32_t *ids,
                                     int rank, const int64_t *shape, int64_t num_embeddings,
                                     int64_t dim);

/**
 * @brief Layer normalization over the last dimension:
 *        y = (x − mean)/√(var + eps)·γ + β, var biased.
 *
 * Parameters: "<name>.weight" (γ, ones) and "<name>.bias" (β, zeros), [D].
 * Mean and variance are computed in two passes with double accumulators.
 * @param[in] m    The model.
 * @param[in] name Layer name.
 * @param[in] x    [..., D], rank >= 1.
 * @param[in] eps  Added to the variance, > 0 (PyTorch's default is 1e-5).
 * @return A step tensor of x's shape, or NULL.
 */
VIKT_API vikt_tensor *vikt_layer_norm(vikt_model *m, const char *name, vikt_tensor *x,
                                      float eps);

/**
 * @brief Batch normalization over [N, C] or [N, C, H, W], per channel C.
 *
 * Training mode normalizes with the batch mean and biased variance and
 * updates the running statistics: r ← (1 − momentum)·r + momentum·s, with the
 * unbiased variance for "running_var" (also when gradients are disabled, as
 * PyTorch does). Evaluation mode (vikt_set_training()) normalizes with the
 * running statistics, which are then constants: the output is still
 * differentiable in x, weight and bias. Parameters "<name>.weight" (ones)
 * and "<name>.bias" (zeros), buffers "<name>.running_mean" (zeros) and
 * "<name>.running_var" (ones), all [C]. PyTorch's "num_batches_tracked" is
 * not kept (it only matters for momentum=None, the cumulative average, which
 * is not offered).
 * @param[in] m        The model.
 * @param[in] name     Layer name.
 * @param[in] x        [N, C] or [N, C, H, W]; training needs more than one
 *                     value per channel.
 * @param[in] momentum Running-statistics factor in [0, 1] (PyTorch: 0.1).
 * @param[in] eps      Added to the variance, > 0 (PyTorch: 1e-5).
 * @return A step tensor of x's shape, or NULL.
 */
VIKT_API vikt_tensor *vikt_batch_norm(vikt_model *m, const char *name, vikt_tensor *x,
                                      float momentum, float eps);

/**
 * @brief LSTM over a batch-first sequence (torch.nn.LSTM, one layer):
 *        i,f,g,o = σ,σ,tanh,σ(W_ih·x_t + b_ih + W_hh·h + b_hh) split in that
 *        order; c ← f⊙c + i⊙g; h ← o⊙tanh(c).
 *
 * Parameters: "<name>.weight_ih_l0" [4H, I], "<name>.weight_hh_l0" [4H, H],
 * "<name>.bias_ih_l0" and "<name>.bias_hh_l0" [4H], all U(−1/√H, 1/√H).
 * The states may require gradients and h_n, c_n carry them, so passing
 * h_n, c_n as the next call's h0, c0 continues the sequence.
 * @param[in]  m      The model.
 * @param[in]  name   Layer name.
 * @param[in]  x      [N, T, I], N, T, I >= 1; I must match an existing
 *                    "<name>.weight_ih_l0" (::VIKT_ERR_SHAPE otherwise).
 * @param[in]  hidden H, >= 1.
 * @param[in]  h0     Initial hidden state [N, H], or NULL for zeros.
 * @param[in]  c0     Initial cell state [N, H], or NULL for zeros.
 * @param[out] h_n    Receives the last hidden state [N, H] (a step tensor);
 *                    may be NULL; set to NULL on failure.
 * @param[out] c_n    Receives the last cell state [N, H] (a step tensor);
 *                    may be NULL; set to NULL on failure.
 * @return Every step's hidden state [N, T, H], or NULL.
 */
VIKT_API vikt_tensor *vikt_lstm(vikt_model *m, const char *name, vikt_tensor *x, int64_t hidden,
                                vikt_tensor *h0, vikt_tensor *c0, vikt_tensor **h_n,
                                vikt_tensor **c_n);

/**
 * @brief GRU over a batch-first sequence (torch.nn.GRU, one layer):
 *        r = σ(W_ir·x + b_ir + W_hr·h + b_hr), z = σ(… z …),
 *        n = tanh(W_in·x + b_in + r⊙(W_hn·h + b_hn)), h ← (1 − z)⊙n + z⊙h.
 *
 * Parameters: "<name>.weight_ih_l0" [3H, I], "<name>.weight_hh_l0" [3H, H],
 * "<name>.bias_ih_l0" and "<name>.bias_hh_l0" [3H] (gate order r, z, n), all
 * U(−1/√H, 1/√H). h0 may require a gradient and h_n carries one, so passing
 * h_n as the next call's h0 continues the sequence.
 * @param[in]  m      The model.
 * @param[in]  name   Layer name.
 * @param[in]  x      [N, T, I], N, T, I >= 1; I must match an existing
 *                    "<name>.weight_ih_l0" (::VIKT_ERR_SHAPE otherwise).
 * @param[in]  hidden H, >= 1.
 * @param[in]  h0     Initial hidden state [N, H], or NULL for zeros.
 * @param[out] h_n    Receives the last hidden state [N, H] (a step tensor);
 *                    may be NULL; set to NULL on failure.
 * @return Every step's hidden state [N, T, H], or NULL.
 */
VIKT_API vikt_tensor *vikt_gru(vikt_model *m, const char *name, vikt_tensor *x, int64_t hidden,
                               vikt_tensor *h0, vikt_tensor **h_n);

/**
 * @brief Multi-head self-attention: per head softmax(Q·Kᵀ/√d_head [+ causal
 *        mask])·V, heads concatenated and projected.
 *
 * Parameters: dense layers "<name>.q", "<name>.k", "<name>.v" and
 * "<name>.out", each [D, D] with bias. Head h uses features
 * h·d_head … (h+1)·d_head−1, as torch.nn.MultiheadAttention does; its
 * in_proj_weight is the q, k and v weights stacked, out_proj is "<name>.out".
 * @param[in] m      The model.
 * @param[in] name   Layer name, e.g. "block0.attn".
 * @param[in] x      [N, T, D].
 * @param[in] heads  Number of heads; divides D.
 * @param[in] causal Non-zero to let position i attend only to j <= i.
 * @return [N, T, D], or NULL.
 */
VIKT_API vikt_tensor *vikt_attention(vikt_model *m, const char *name, vikt_tensor *x,
                                     int64_t heads, int causal);

/**
 * @brief Pre-LN transformer block:
 *        h = x + attention(layer_norm(x)); y = h + fc2(gelu(fc1(layer_norm(h)))).
 *
 * The same function as torch.nn.TransformerEncoderLayer with norm_first=True,
 * activation="gelu" and dropout 0.
 *
 * Sub-layers: "<name>.ln1", "<name>.attn", "<name>.ln2" (eps 1e-5),
 * "<name>.mlp.fc1" (D → mlp_hidden) and "<name>.mlp.fc2" (mlp_hidden → D).
 * @param[in] m          The model.
 * @param[in] name       Block name, e.g. "block0".
 * @param[in] x          [N, T, D].
 * @param[in] heads      Attention heads; divides D.
 * @param[in] mlp_hidden Width of the MLP, >= 1 (commonly 4·D).
 * @param[in] causal     Non-zero for a causal (decoder) block.
 * @return [N, T, D], or NULL.
 */
VIKT_API vikt_tensor *vikt_transformer_block(vikt_model *m, const char *name, vikt_tensor *x,
                                             int64_t heads, int64_t mlp_hidden, int causal);

/**
 * @brief Mixture of experts with a learned top-k router.
 *
 * Router probabilities p = softmax(x·W_rᵀ) over E experts; each token goes to
 * its k most probable experts (only those are computed) and y = Σ g_e·expert_e(x),
 * where g_e = p_e for k = 1 (Switch Transformer) and the top-2 probabilities
 * renormalized to sum 1 for k = 2. Each expert is fc2(gelu(fc1(x))). The
 * auxiliary load-balancing loss is E·Σ_e f_e·P_e with f_e the fraction of tokens
 * whose first choice is e and P_e the mean router probability of e (Switch
 * Transformer, Fedus et al. 2021); add it, scaled (e.g. by 0.01), to the loss.
 * Parameters: "<name>.router.weight" [E, D], U(−1/√D, 1/√D), no bias, and dense
 * layers "<name>.experts.<e>.fc1" (D → hidden) and "<name>.experts.<e>.fc2"
 * (hidden → D); every expert's parameters are created on the first call, used
 * or not. The choice of experts (ties go to the lower index) is not
 * differentiated; the router learns through the gates and the auxiliary loss,
 * and an expert that gets no token gets no gradient.
 * @param[in]  m        The model.
 * @param[in]  name     Layer name.
 * @param[in]  x        [..., D] of rank >= 2: tokens along the leading
 *                      dimensions (at least one).
 * @param[in]  experts  E, >= 1.
 * @param[in]  hidden   Width of each expert's MLP, >= 1.
 * @param[in]  top_k    1 or 2 (at most E).
 * @param[out] aux_loss Receives the auxiliary loss (rank 0), or NULL on
 *                      failure; may be NULL.
 * @return A step tensor of x's shape, or NULL.
 */
VIKT_API vikt_tensor *vikt_moe(vikt_model *m, const char *name, vikt_tensor *x, int64_t experts,
                               int64_t hidden, int top_k, vikt_tensor **aux_loss);

/* --------------------------------------------------------------- adapters */

/*
 * Parameter-efficient fine-tuning: small trainable modules attached to the
 * dense layers of a trained model (vikt_dense(), which vikt_attention(),
 * vikt_transformer_block() and vikt_moe() use for their projections) while the
 * base parameters stay frozen. Attach after the layers exist (the model was
 * run once or loaded); vikt_dense() then adds the adapters' output on every
 * call. An optimizer created before attaching also trains the new parameters.
 */

/** @brief The nonlinearity of a bottleneck adapter (vikt_adapter_attach()). */
typedef enum vikt_activation {
    VIKT_ACT_RELU = 0, /**< max(0, x). */
    VIKT_ACT_GELU = 1, /**< x·Φ(x), as vikt_gelu(). */
    VIKT_ACT_TANH = 2  /**< tanh(x). */
} vikt_activation;

/**
 * @brief Attach LoRA adapters (Hu et al. 2021) to the dense layers that
 *        @p pattern names: y = x·Wᵀ + b + (alpha/rank)·dropout(x)·Aᵀ·Bᵀ.
 *
 * A dense layer is a parameter "<layer>.weight" [out, in] with a bias
 * "<layer>.bias" [out]; @p pattern matches a layer name as
 * vikt_param_freeze() matches parameter names, so "blocks.0.attn" takes the
 * q, k, v and out projections of that attention and "" every dense layer.
 * Each gets "<layer>.lora_A.weight" [rank, in], U(±1/√in) (PEFT's
 * kaiming_uniform_ with a = √5), and "<layer>.lora_B.weight" [out, rank],
 * zeros, so the model computes exactly what it did before. Parameters of
 * those names that already exist with those shapes are used as they are.
 * Then every parameter of the model except the adapters' is frozen (PEFT's
 * default, bias "none"); unfreeze a new head with vikt_param_freeze().
 * Dropout applies to the adapter's input only, in training mode, from the
 * model's generator. Layers that do not exist yet are not attached
 * (::VIKT_ERR_NOT_FOUND when none matches). All or nothing: on failure the
 * model is as before.
 * @param[in] m       The model.
 * @param[in] pattern A layer name or prefix.
 * @param[in] rank    r >= 1.
 * @param[in] alpha   The scale numerator, finite and > 0 (the update is
 *                    scaled by alpha/rank).
 * @param[in] dropout Dropout probability on the adapter's input, 0 <= p < 1.
 * @return The number of layers attached (>= 1), ::VIKT_ERR_NULL,
 *         ::VIKT_ERR_ARG, ::VIKT_ERR_NOT_FOUND, ::VIKT_ERR_STATE (a matched
 *         layer already has LoRA), ::VIKT_ERR_SHAPE (an existing A or B of
 *         another shape) or ::VIKT_ERR_NOMEM.
 */
VIKT_API int64_t vikt_lora_attach(vikt_model *m, const char *pattern, int64_t rank, float alpha,
                                  float dropout);

/**
 * @brief Fold every unmerged LoRA adapter into its base weight:
 *        W += (alpha/rank)·B·A; the forward then skips the adapter.
 *
 * The merged layer computes what the unmerged one did to float32 rounding,
 * at the cost of a plain dense layer. While merged, A and B get no gradient:
 * unmerge before training on. vikt_save() writes the merged weights.
 * @param[in] m The model.
 * Adapters are merged one by one; on failure those done stay merged and
 * another call finishes the rest.
 * @return The number of adapters merged (0 when none was unmerged),
 *         ::VIKT_ERR_NULL, ::VIKT_ERR_STATE (a pruned base weight: merging
 *         would fill its masked entries) or ::VIKT_ERR_NOMEM.
 */
VIKT_API int64_t vikt_lora_merge(vikt_model *m);

/**
 * @brief Undo vikt_lora_merge(): W −= (alpha/rank)·B·A for every merged adapter.
 *
 * No copy of W is kept, so W comes back to float32 rounding, not bitwise:
 * an element may differ by about one ulp of |W| + |(alpha/rank)·B·A|.
 * @param[in] m The model.
 * As for merging, on failure those done stay unmerged.
 * @return The number of adapters unmerged, ::VIKT_ERR_NULL or ::VIKT_ERR_NOMEM.
 */
VIKT_API int64_t vikt_lora_unmerge(vikt_model *m);

/**
 * @brief Save the LoRA adapters alone as a safetensors file, crash-safely.
 *
 * The tensors are "<layer>.lora_A.weight" and "<layer>.lora_B.weight" (PEFT's
 * names without its "base_model.model." prefix), float32; the metadata
 * "vikt.lora.<layer>" holds "rank=R alpha=A dropout=P" for each adapter,
 * which vikt_lora_load() needs: R in decimal, A and P as C99 hexadecimal
 * floats ("rank=8 alpha=0x1p+4 dropout=0x1.99999ap-4"), exact and the same
 * whatever the program's LC_NUMERIC locale. Merged adapters are saved as
 * well (A and B are the same either way).
 * @param[in] m    The model.
 * @param[in] path The file, replaced atomically.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL, ::VIKT_ERR_NOT_FOUND (no adapter),
 *         ::VIKT_ERR_IO or ::VIKT_ERR_NOMEM.
 */
VIKT_API int vikt_lora_save(vikt_model *m, const char *path);

/**
 * @brief Load LoRA adapters saved by vikt_lora_save() into a model that has
 *        the base layers (loaded, or run once): attach them where missing and
 *        fill A and B.
 *
 * Strict: every tensor must belong to an adapter named in the metadata, with
 * the shapes its rank and its layer's weight imply; every layer must exist;
 * a layer that already has LoRA must have the same rank and be unmerged (its
 * alpha and dropout are then taken from the file). Names with PEFT's
 * "base_model.model." prefix are accepted too. The configuration must be
 * spelled as vikt_lora_save() spells it (a decimal "alpha=1.5" is refused).
 * Everything is checked, every
 * CRC32C included, before the model changes; afterwards the base is frozen as
 * by vikt_lora_attach().
 * @param[in] m    The model.
 * @param[in] path The file.
 * @return The number of adapters loaded (>= 1), ::VIKT_ERR_NULL,
 *         ::VIKT_ERR_IO, ::VIKT_ERR_FORMAT (not an adapter file, or a
 *         malformed one), ::VIKT_ERR_NOT_FOUND (a layer the model lacks),
 *         ::VIKT_ERR_SHAPE (a shape or rank that does not fit),
 *         ::VIKT_ERR_STATE (a merged adapter) or ::VIKT_ERR_NOMEM.
 */
VIKT_API int64_t vikt_lora_load(vikt_model *m, const char *path);

/**
 * @brief Insert bottleneck adapters (Houlsby et al. 2019) after the dense
 *        layers that @p pattern names: h ← h + up(act(down(h))).
 *
 * Layers are matched as by vikt_lora_attach(). Each gets the dense layers
 * "<layer>.adapter.down" (out → @p bottleneck_width, torch.nn.Linear's
 * initialization) and "<layer>.adapter.up" (back to out, weight and bias
 * zero), so the model computes exactly what it did before. Applied after
 * LoRA on the same layer. Then every parameter except the adapters' is
 * frozen, as by vikt_lora_attach(). All or nothing.
 * @param[in] m                The model.
 * @param[in] pattern          A layer name or prefix.
 * @param[in] bottleneck_width The adapter's inner width, >= 1.
 * @param[in] activation       A ::vikt_activation.
 * @return The number of layers given an adapter (>= 1), ::VIKT_ERR_NULL,
 *         ::VIKT_ERR_ARG, ::VIKT_ERR_NOT_FOUND, ::VIKT_ERR_STATE (a layer
 *         already has one), ::VIKT_ERR_SHAPE or ::VIKT_ERR_NOMEM.
 */
VIKT_API int64_t vikt_adapter_attach(vikt_model *m, const char *pattern, int64_t bottleneck_width,
                                     vikt_activation activation);

/* ------------------------------------------------------------- optimizers */

/**
 * @brief Update rules, as torch.optim defines them (g is the gradient plus
 *        weight_decay·p where the rule couples weight decay; lr the scheduled
 *        learning rate; t the parameter's own step count, 1 on its first
 *        update, as torch keeps it per parameter).
 *
 * Each optimizer updates every parameter of its model that requires a
 * gradient, in place, keeping per-parameter state created the first time the
 * parameter is updated (a parameter added or unfrozen later starts at t = 1).
 * A parameter the backward pass did not reach is updated with its zero
 * gradient, as after torch's zero_grad(set_to_none=False).
 */
typedef enum vikt_optim_kind {
    /** b ← μ·b + (1−τ)·g (b = g at t = 1); g ← g + μ·b if Nesterov else b;
     *  p ← p − lr·g. Defaults: lr 0.01, μ 0, τ 0. */
    VIKT_OPTIM_SGD = 0,
    /** s ← s + g²; p ← p − lr/(1 + (t−1)·lr_decay) · g/(√s + ε).
     *  Defaults: lr 0.01, ε 1e-10, initial accumulator 0. */
    VIKT_OPTIM_ADAGRAD = 1,
    /** v ← α·v + (1−α)·g²; centered: ḡ ← α·ḡ + (1−α)·g, v' = v − ḡ²;
     *  momentum: b ← μ·b + g/(√v' + ε), p ← p − lr·b; else p ← p − lr·g/(√v' + ε).
     *  Defaults: lr 0.01, α 0.99, ε 1e-8. */
    VIKT_OPTIM_RMSPROP = 2,
    /** m ← β₁·m + (1−β₁)·g; v ← β₂·v + (1−β₂)·g²; amsgrad: v̂ ← max(v̂, v);
     *  p ← p − lr/(1−β₁ᵗ) · m/(√v/√(1−β₂ᵗ) + ε). Defaults: lr 0.001,
     *  β 0.9/0.999, ε 1e-8. Unlike PyTorch, m and v are stored as a signed
     *  zero once they decay below FLT_MIN (subnormal arithmetic is about 100×
     *  slower on x86); the change to p would be below 1e-30. */
    VIKT_OPTIM_ADAM = 3,
    /** Adam with decoupled weight decay: p ← p·(1 − lr·weight_decay) before the
     *  Adam update, g not coupled. Defaults as Adam, weight decay 0.01. */
    VIKT_OPTIM_ADAMW = 4
} vikt_optim_kind;

/** @brief Learning-rate schedules; the position advances once per
 *         vikt_optimizer_step() (not per epoch). */
typedef enum vikt_schedule {
    VIKT_SCHEDULE_CONSTANT = 0,    /**< lr(t) = lr. */
    VIKT_SCHEDULE_STEP = 1,        /**< lr·γ^⌊t/step_size⌋. */
    VIKT_SCHEDULE_EXPONENTIAL = 2, /**< lr·γᵗ. */
    VIKT_SCHEDULE_COSINE = 3       /**< Linear warm-up from 0 over warmup_steps, then
                                        η_min + (lr − η_min)·(1 + cos(π·t'/T))/2 with
                                        t' = t − warmup_steps clamped to T = t_max. */
} vikt_schedule;

/** @brief Hyperparameters, set with vikt_optimizer_set() and read with
 *         vikt_optimizer_get(). Setting one the rule does not use is
 *         ::VIKT_ERR_ARG. */
typedef enum vikt_optim_param {
    VIKT_OPT_LR = 0,             /**< Base learning rate, finite, >= 0. */
    VIKT_OPT_WEIGHT_DECAY = 1,   /**< L2 (coupled) or decoupled (AdamW), >= 0. */
    VIKT_OPT_MOMENTUM = 2,       /**< SGD, RMSProp: μ in [0, 1). */
    VIKT_OPT_DAMPENING = 3,      /**< SGD: τ in [0, 1]. */
    VIKT_OPT_NESTEROV = 4,       /**< SGD: 0 or 1; needs momentum > 0, dampening 0. */
    VIKT_OPT_BETA1 = 5,          /**< Adam(W): β₁ in [0, 1). */
    VIKT_OPT_BETA2 = 6,          /**< Adam(W): β₂ in [0, 1). */
    VIKT_OPT_EPS = 7,            /**< AdaGrad, RMSProp, Adam(W): ε > 0. */
    VIKT_OPT_AMSGRAD = 8,        /**< Adam(W): 0 or 1. */
    VIKT_OPT_ALPHA = 9,          /**< RMSProp smoothing α in [0, 1). */
    VIKT_OPT_CENTERED = 10,      /**< RMSProp: 0 or 1. */
    VIKT_OPT_LR_DECAY = 11,      /**< AdaGrad: >= 0. */
    VIKT_OPT_INITIAL_ACCUMULATOR = 12, /**< AdaGrad: >= 0; before the first step only
                                            (later ::VIKT_ERR_STATE). */
    VIKT_OPT_CLIP_NORM = 13,     /**< Scale the gradients of all trainable parameters by
                                      max_norm/(norm + 1e-6) when that is below 1, norm
                                      being their global L2 norm (as clip_grad_norm_;
                                      applied after clipping by value); 0 = off. */
    VIKT_OPT_CLIP_VALUE = 14,    /**< Clamp each gradient to [−v, v]; 0 = off. */
    VIKT_OPT_SKIP_NONFINITE = 15,/**< 1: a step whose gradients hold NaN or Inf changes
                                      nothing (parameters, gradients and state bitwise
                                      unchanged, t and the schedule not advanced) and
                                      counts in ::VIKT_OPT_SKIPPED_STEPS. 0 (the default):
                                      such a gradient is applied as the rule computes
                                      it, so the parameters it reaches become NaN. */
    VIKT_OPT_SCHEDULE = 16,      /**< A ::vikt_schedule; default constant. */
    VIKT_OPT_STEP_SIZE = 17,     /**< Step schedule: steps per decay, >= 1; default 1. */
    VIKT_OPT_GAMMA = 18,         /**< Step and exponential schedules: factor in (0, 1];
                                      default 0.1. */
    VIKT_OPT_WARMUP_STEPS = 19,  /**< Cosine schedule: >= 0; default 0. */
    VIKT_OPT_T_MAX = 20,         /**< Cosine schedule: steps after warm-up, >= 1;
                                      default 1. */
    VIKT_OPT_ETA_MIN = 21,       /**< Cosine schedule: final learning rate, >= 0;
                                      default 0. */
    VIKT_OPT_STEP = 22,          /**< Read-only: steps taken (the schedule position). */
    VIKT_OPT_CURRENT_LR = 23,    /**< Read-only: the learning rate the next step uses. */
    VIKT_OPT_SKIPPED_STEPS = 24  /**< Read-only: steps skipped for non-finite gradients. */
} vikt_optim_param;

/**
 * @brief Create an optimizer with the rule's default hyperparameters.
 * @param[in]  m    The model whose parameters it updates.
 * @param[in]  kind A ::vikt_optim_kind.
 * @param[in]  lr   Learning rate, finite and >= 0.
 * @param[out] out  Receives the optimizer; NULL on failure.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL, ::VIKT_ERR_ARG or ::VIKT_ERR_NOMEM.
 */
VIKT_API int vikt_optimizer_create(vikt_model *m, vikt_optim_kind kind, float lr,
                                   vikt_optimizer **out);

/**
 * @brief Plain SGD: vikt_optimizer_create() with ::VIKT_OPTIM_SGD.
 * @param[in]  m   The model whose parameters are updated.
 * @param[in]  lr  Learning rate, >= 0 and finite.
 * @param[out] out Receives the optimizer; NULL on failure.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL, ::VIKT_ERR_ARG or ::VIKT_ERR_NOMEM.
 */
VIKT_API int vikt_sgd_create(vikt_model *m, float lr, vikt_optimizer **out);

/**
 * @brief Adam: vikt_optimizer_create() with ::VIKT_OPTIM_ADAM.
 * @param[in]  m   The model whose parameters are updated.
 * @param[in]  lr  Learning rate, >= 0 and finite.
 * @param[out] out Receives the optimizer; NULL on failure.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL, ::VIKT_ERR_ARG or ::VIKT_ERR_NOMEM.
 */
VIKT_API int vikt_adam_create(vikt_model *m, float lr, vikt_optimizer **out);

/**
 * @brief Set a hyperparameter; the value is validated first.
 * @param[in,out] opt   The optimizer.
 * @param[in]     param A ::vikt_optim_param that is not read-only.
 * @param[in]     value The value (flags and counts as whole numbers).
 * @return ::VIKT_OK, ::VIKT_ERR_NULL, ::VIKT_ERR_ARG (out of range, not used
 *         by this rule, read-only, or Nesterov without momentum > 0 and
 *         dampening 0) or ::VIKT_ERR_STATE (the initial accumulator after the
 *         first step); on error nothing changes.
 */
VIKT_API int vikt_optimizer_set(vikt_optimizer *opt, vikt_optim_param param, double value);

/**
 * @brief Read a hyperparameter or a read-only counter.
 * @param[in]  opt   The optimizer.
 * @param[in]  param A ::vikt_optim_param.
 * @param[out] value Receives the value.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL or ::VIKT_ERR_ARG (unknown).
 */
VIKT_API int vikt_optimizer_get(const vikt_optimizer *opt, vikt_optim_param param,
                                double *value);

/**
 * @brief Apply one update to every trainable parameter of the model, after
 *        clipping (which changes the gradients in place, as PyTorch does).
 *        Does not zero the gradients. The first step allocates the state;
 *        later steps allocate nothing unless a parameter was added or
 *        unfrozen, or a setting that needs more state (momentum, centered,
 *        amsgrad) was turned on. Pruned values (see @ref pruning) get a zero
 *        gradient before clipping and are set to 0 again after the update.
 * @param[in] opt The optimizer.
 * @return ::VIKT_OK (also for a step skipped for non-finite gradients),
 *         ::VIKT_ERR_NULL, ::VIKT_ERR_NOMEM (nothing is updated; a later call
 *         can succeed) or ::VIKT_ERR_STATE (the model holds an error; nothing
 *         is updated).
 */
VIKT_API int vikt_optimizer_step(vikt_optimizer *opt);

/**
 * @brief Destroy an optimizer and its state. Call it before destroying the
 *        model.
 * @param[in] opt The optimizer, or NULL (nothing happens).
 */
VIKT_API void vikt_optimizer_destroy(vikt_optimizer *opt);

/* ------------------------------------------------------------- statistics */

/**
 * @brief Summary statistics of an array of floats, filled by
 *        vikt_stats_compute().
 *
 * Everything is computed in double precision. The moments, the extremes and
 * the norm are over the **finite** values only: NaN and infinities are
 * counted (@c nan_count, @c inf_count) and left out, so one overflowed
 * weight does not hide what the rest look like. A statistic with no value
 * to describe (no finite value, or fewer than two for @c std_unbiased) is
 * NaN. Members may be added at the end in a later 0.x minor version
 * (histograms and per-parameter statistics build on this struct): a
 * program compiled against an older header must then be rebuilt.
 */
typedef struct vikt_stats {
    int64_t count;        /**< Elements examined (@p n). */
    int64_t finite_count; /**< Finite elements: what the statistics below describe. */
    int64_t nan_count;    /**< NaN elements. */
    int64_t inf_count;    /**< Elements that are +Inf or -Inf. */
    int64_t zero_count;   /**< Elements equal to zero (+0 or -0). */
    double mean;          /**< Mean of the finite values. */
    /** Population standard deviation (divides by the number of finite values,
     *  numpy's default): a tensor's values are all there is, not a sample
     *  of a larger set. */
    double std;
    /** Sample standard deviation with Bessel's correction (divides by the
     *  number of finite values minus one): what torch.std() returns by
     *  default; NaN for fewer than two finite values, as there. */
    double std_unbiased;
    double min;           /**< Smallest finite value. */
    double max;           /**< Largest finite value. */
    double l2_norm;       /**< Square root of the sum of squares of the finite values; 0 for none. */
    double zero_fraction; /**< @c zero_count / @c count (sparsity); 0 when @c count is 0. */
} vikt_stats;

/**
 * @brief Compute count, mean, standard deviations, min, max, L2 norm and the
 *        fraction of exact zeros of @p n floats, in double precision.
 *
 * Two passes over the data: the mean, then the squared deviations from it
 * (with the corrected two-pass formula, so a large mean does not swamp a
 * small spread). Sums are accumulated in blocks, keeping the rounding error
 * far below float32's resolution for any @p n. Nothing is allocated; the
 * call is safe from any thread.
 * @param[in]  x   @p n values; may be NULL when @p n is 0.
 * @param[in]  n   Number of values, >= 0.
 * @param[out] out Receives the statistics (see ::vikt_stats); unchanged on
 *                 failure.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL (@p out, or @p x with @p n > 0) or
 *         ::VIKT_ERR_ARG (@p n < 0).
 */
VIKT_API int vikt_stats_compute(const float *x, int64_t n, vikt_stats *out);

/**
 * @brief Count @p n floats into @p bins equal-width bins over [lo, hi], in
 *        double precision, with numpy.histogram's edge rules.
 *
 * The edges are e_i = lo + i·(hi − lo)/bins for i < bins, and e_bins = hi
 * exactly. Bin i holds the values with e_i <= x < e_{i+1}; the last bin
 * also holds x == hi (it is closed, as in numpy). Values below @p lo or above
 * @p hi are counted in @p below and @p above, NaN and ±Inf in @p nonfinite,
 * and are in no bin; so Σcounts + below + above + nonfinite = @p n. Nothing
 * is allocated.
 * @param[in]  x         @p n values; may be NULL when @p n is 0.
 * @param[in]  n         Number of values, >= 0.
 * @param[in]  lo        Left edge of the first bin, finite.
 * @param[in]  hi        Right edge of the last bin, finite and > @p lo.
 * @param[in]  bins      Number of bins, >= 1.
 * @param[out] counts    Receives @p bins counts (overwritten, not added to).
 * @param[out] below     Receives the number of values < @p lo; may be NULL.
 * @param[out] above     Receives the number of values > @p hi; may be NULL.
 * @param[out] nonfinite Receives the number of NaN and infinite values; may
 *                       be NULL.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL (@p counts, or @p x with @p n > 0) or
 *         ::VIKT_ERR_ARG (@p n < 0, @p bins < 1, @p lo or @p hi not finite,
 *         @p hi <= @p lo, or bin edges that collapse: (hi − lo)/bins rounds
 *         to no gap between two edges); nothing is written on failure.
 */
VIKT_API int vikt_histogram(const float *x, int64_t n, double lo, double hi, int64_t bins,
                            int64_t *counts, int64_t *below, int64_t *above,
                            int64_t *nonfinite);

/** @brief What of a parameter vikt_param_stats() and vikt_check_finite()
 *         look at (flags; combine with |). */
typedef enum vikt_stats_of {
    VIKT_STATS_VALUE = 1, /**< The parameter's values (and, for vikt_check_finite(),
                               the buffers' values). */
    VIKT_STATS_GRAD = 2   /**< The parameter's gradient. */
} vikt_stats_of;

/**
 * @brief vikt_stats_compute() over a parameter's values or gradient, found
 *        by name.
 * @param[in]  m    The model.
 * @param[in]  name The parameter's name.
 * @param[in]  what ::VIKT_STATS_VALUE or ::VIKT_STATS_GRAD (not both).
 * @param[out] out  Receives the statistics; unchanged on failure.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL, ::VIKT_ERR_NOT_FOUND (no such
 *         parameter), ::VIKT_ERR_ARG (@p what is neither flag alone) or
 *         ::VIKT_ERR_STATE (the parameter holds no gradient); errors other than NULL @p m are recorded on the
 *         model with a message naming the parameter.
 */
VIKT_API int vikt_param_stats(vikt_model *m, const char *name, vikt_stats_of what,
                              vikt_stats *out);

/**
 * @brief The L2 norm of each parameter's gradient and the global norm, in
 *        double precision.
 *
 * The global norm is sqrt(Σ norms²) over every parameter, frozen ones
 * included (their gradients hold whatever was last accumulated until
 * vikt_zero_grad()): what torch.nn.utils.clip_grad_norm_ computes before it
 * clips (::VIKT_OPT_CLIP_NORM clips over the trainable parameters only). A
 * parameter without a gradient counts 0. NaN and infinities are not left out: a NaN gradient makes its norm and the
 * global norm NaN, so trouble shows up. Nothing is allocated.
 * @param[in]  m      The model.
 * @param[out] norms  Receives the norm of each parameter in creation order
 *                    (see vikt_param_at()); may be NULL.
 * @param[in]  n      Capacity of @p norms, at least vikt_param_count() when
 *                    @p norms is not NULL.
 * @param[out] global Receives the global norm; may be NULL.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL or ::VIKT_ERR_ARG (@p norms too short;
 *         recorded on the model).
 */
VIKT_API int vikt_grad_norms(vikt_model *m, double *norms, int64_t n, double *global);

/** @brief Keeps a copy of a model's parameters to measure how much a step
 *         changed them (vikt_update_tracker_create()). */
typedef struct vikt_update_tracker vikt_update_tracker;

/**
 * @brief Create a tracker of update-to-weight ratios ‖Δw‖/‖w‖ per parameter.
 *
 * Use: vikt_update_tracker_snapshot() before vikt_optimizer_step(),
 * vikt_update_tracker_ratios() after. A ratio far above 1e-3 per step often
 * means a learning rate too high for that tensor, far below means too low
 * (or a frozen or dead tensor). The copy is one buffer of
 * vikt_model_num_params() floats, allocated by the first snapshot (and again
 * only when parameters are added), from the model's allocator.
 * @param[in]  m   The model; the tracker belongs to it: destroy the tracker
 *                 first.
 * @param[out] out Receives the tracker; NULL on failure.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL or ::VIKT_ERR_NOMEM.
 */
VIKT_API int vikt_update_tracker_create(vikt_model *m, vikt_update_tracker **out);

/**
 * @brief Copy every parameter's values into the tracker (call before the
 *        step).
 * @param[in,out] t The tracker.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL or ::VIKT_ERR_NOMEM (the previous
 *         snapshot is forgotten; recorded on the model).
 */
VIKT_API int vikt_update_tracker_snapshot(vikt_update_tracker *t);

/**
 * @brief ‖w − w₀‖ / ‖w₀‖ per parameter, w₀ being the snapshot, in double
 *        precision.
 *
 * A parameter whose snapshot norm is 0 gets 0 if it did not change and
 * +Inf otherwise; non-finite values make the ratio NaN or Inf. Nothing is
 * allocated.
 * @param[in]  t      The tracker.
 * @param[out] ratios Receives one ratio per parameter in creation order.
 * @param[in]  n      Capacity of @p ratios, at least vikt_param_count().
 * @return ::VIKT_OK, ::VIKT_ERR_NULL, ::VIKT_ERR_ARG (@p ratios too short)
 *         or ::VIKT_ERR_STATE (no snapshot, or parameters were added since);
 *         errors are recorded on the model.
 */
VIKT_API int vikt_update_tracker_ratios(const vikt_update_tracker *t, double *ratios,
                                        int64_t n);

/**
 * @brief Destroy a tracker.
 * @param[in] t The tracker, or NULL (nothing happens).
 */
VIKT_API void vikt_update_tracker_destroy(vikt_update_tracker *t);

/**
 * @brief The @p k values of largest magnitude with their flat indices,
 *        largest first: which inputs a linear model leans on.
 *
 * Ties in magnitude go to the lower index first, so the result is the same
 * on every run. NaN ranks above every magnitude, infinities included, so
 * trouble comes first. O(n log k) time; nothing is allocated (the
 * output arrays are the working space).
 * @param[in]  x       @p n values; may be NULL when @p n is 0.
 * @param[in]  n       Number of values, >= 0.
 * @param[in]  k       How many to return, >= 0; more than @p n returns @p n.
 * @param[out] indices Receives min(k, n) flat indices (see
 *                     vikt_unravel_index() for coordinates).
 * @param[out] values  Receives the values at those indices (signed); may be
 *                     NULL.
 * @return The number written, min(@p k, @p n); ::VIKT_ERR_NULL (@p indices
 *         with @p k > 0, or @p x with @p n > 0) or ::VIKT_ERR_ARG (@p n or
 *         @p k < 0).
 */
VIKT_API int64_t vikt_topk_abs(const float *x, int64_t n, int64_t k, int64_t *indices,
                               float *values);

/**
 * @brief Turn a flat row-major index into coordinates.
 * @param[in]  index  The flat index, 0 <= index < the product of @p shape.
 * @param[in]  rank   0 to ::VIKT_MAX_RANK.
 * @param[in]  shape  @p rank sizes, each >= 1 (may be NULL for rank 0).
 * @param[out] coords Receives @p rank coordinates (may be NULL for rank 0).
 * @return ::VIKT_OK, ::VIKT_ERR_NULL or ::VIKT_ERR_ARG (@p index outside
 *         the shape, @p rank out of range or a size < 1).
 */
VIKT_API int vikt_unravel_index(int64_t index, int rank, const int64_t *shape,
                                int64_t *coords);

/**
 * @brief Check parameters (and buffers) and gradients for NaN and infinity.
 *
 * Looks at each parameter in creation order, its values then its gradient
 * (as @p what asks), then at the buffers' values, and stops at the first
 * non-finite element. That one is recorded as the model's error, e.g.
 * "vikt_check_finite: the gradient of parameter 'fc1.weight' (4x3) holds NaN
 * at flat index 5 [1, 2]". Cost: one pass over what is checked; nothing is
 * allocated.
 * @param[in] m    The model.
 * @param[in] what ::VIKT_STATS_VALUE, ::VIKT_STATS_GRAD or both (|).
 * @return ::VIKT_OK (all finite), ::VIKT_ERR_NONFINITE (recorded),
 *         ::VIKT_ERR_NULL or ::VIKT_ERR_ARG (@p what has no known flag or
 *         another bit).
 */
VIKT_API int vikt_check_finite(vikt_model *m, int what);

/**
 * @brief Turn anomaly detection on or off (like
 *        torch.autograd.detect_anomaly): find the op where NaN or infinity
 *        first appears.
 *
 * When on, every op checks its output after the forward computation and
 * fails with ::VIKT_ERR_NONFINITE, returning NULL, when it holds NaN, or
 * holds ±Inf although no input held NaN or infinity (an overflow or a
 * pole: exp of a large value, log(0), x/0). Infinities that come in through
 * an input may pass on (only NaN stops them), and vikt_causal_mask(), whose
 * contract is −Inf, is exempt. A NaN that came in through an input (a
 * parameter or vikt_input() data) fails at the first op that reads it,
 * naming that input. vikt_backward() first checks the gradients that
 * persistent tensors requiring one already hold, then after each op's
 * backward the gradients it wrote, and fails at the first NaN or infinity. The message names the op, the
 * shapes, the flat index and the value, e.g. "anomaly: vikt_log made -inf at
 * flat index 2 [0, 2] of its output 2x3 from finite inputs (2x3)". Checking costs one
 * pass over each output and gradient; when off, each op pays one branch.
 * Off by default.
 * @param[in] m       The model.
 * @param[in] enabled Non-zero turns it on.
 * @return ::VIKT_OK or ::VIKT_ERR_NULL.
 */
VIKT_API int vikt_set_anomaly_mode(vikt_model *m, int enabled);

/**
 * @brief Whether anomaly detection is on.
 * @param[in] m The model.
 * @return 1 or 0; 0 for NULL.
 */
VIKT_API int vikt_anomaly_mode(const vikt_model *m);

/** @brief Watches training and validation losses for overfitting
 *         (vikt_gap_tracker_create()). */
typedef struct vikt_gap_tracker vikt_gap_tracker;

/**
 * @brief Create a tracker of the gap between training and validation loss.
 *
 * The rule, applied once the tracker holds @p window pairs: fit a straight
 * line by least squares to each of the last @p window training losses and
 * validation losses against the epoch number; overfitting is flagged when
 * the validation slope is above @p tolerance and the training slope is below
 * 0 (validation loss rising while training loss falls).
 * @param[in]  m         The model whose allocator is used; destroy the
 *                       tracker first.
 * @param[in]  window    Epochs considered, 2 to 1,000,000.
 * @param[in]  tolerance Smallest validation rise per epoch that counts, in
 *                       loss units, finite and >= 0 (0: any rise).
 * @param[out] out       Receives the tracker; NULL on failure.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL, ::VIKT_ERR_ARG or ::VIKT_ERR_NOMEM.
 */
VIKT_API int vikt_gap_tracker_create(vikt_model *m, int64_t window, double tolerance,
                                     vikt_gap_tracker **out);

/**
 * @brief Add one epoch's losses and apply the rule.
 * @param[in,out] t          The tracker.
 * @param[in]     train_loss The epoch's training loss, finite.
 * @param[in]     val_loss   The epoch's validation loss, finite.
 * @return 1 if overfitting is flagged now, 0 if not (also while fewer than
 *         the window's epochs were added), ::VIKT_ERR_NULL or ::VIKT_ERR_ARG
 *         (a loss that is NaN or infinite; nothing is added).
 */
VIKT_API int vikt_gap_tracker_add(vikt_gap_tracker *t, double train_loss, double val_loss);

/**
 * @brief The tracker's current view.
 * @param[in]  t           The tracker.
 * @param[out] train_slope Receives the training-loss slope per epoch over
 *                         the window (NaN until it is full); may be NULL.
 * @param[out] val_slope   Receives the validation-loss slope (NaN until
 *                         full); may be NULL.
 * @param[out] gap         Receives the last validation loss minus the last
 *                         training loss (NaN before the first epoch); may be
 *                         NULL.
 * @return 1 if overfitting is flagged, 0 if not, or ::VIKT_ERR_NULL.
 */
VIKT_API int vikt_gap_tracker_state(const vikt_gap_tracker *t, double *train_slope,
                                    double *val_slope, double *gap);

/**
 * @brief Destroy a tracker.
 * @param[in] t The tracker, or NULL (nothing happens).
 */
VIKT_API void vikt_gap_tracker_destroy(vikt_gap_tracker *t);

/* ---------------------------------------------------------------- pruning */

/**
 * @page pruning Pruning
 *
 * Magnitude pruning sets the weights of smallest absolute value to zero and
 * keeps them there. vikt_prune_magnitude() picks them per tensor or across
 * tensors and gives each pruned parameter a **mask** (one byte per value,
 * 1 kept, 0 pruned, made from the model's allocator the first time the
 * parameter is pruned). Masked values are exactly 0.0f:
 *
 * - when pruned;
 * - after every vikt_optimizer_step(), which zeroes the masked gradients
 *   before clipping and the update (so no momentum or Adam state builds up
 *   there and gradient-norm clipping sees only the kept values) and the
 *   masked values after it (so weight decay, and state left from before the
 *   pruning, cannot move them); this allocates nothing;
 * - after vikt_load(), which restores the masks vikt_save() stored (see
 *   @ref file_format).
 *
 * Values written directly through vikt_tensor_data() are not masked until
 * the next optimizer step.
 *
 * **Which tensors.** By default the weights: parameters of rank >= 2
 * (dense, convolution, embedding, attention and recurrent matrices), not
 * biases or normalization parameters (rank 1), as torch.nn.utils.prune is
 * usually applied. A pattern selects by name or module prefix as
 * vikt_param_freeze() does, again taking only rank >= 2 parameters, except
 * that a pattern equal to a parameter's full name selects that parameter
 * whatever its rank. Frozen parameters are pruned like the others. Buffers
 * are never pruned.
 *
 * **How many.** A tensor of n values pruned to sparsity s has round(s·n)
 * values masked (half to even, as torch.nn.utils.prune rounds), chosen by
 * increasing |w|; among equal magnitudes, lower indices go first and, in
 * the global scope, earlier parameters (creation order) first, so the count
 * is exact and the choice deterministic. NaN counts as larger than any
 * number. Pruning again keeps every masked value masked (a mask only loses
 * ones): the values already masked are counted first towards the new
 * target, and a target at or below the current count changes nothing.
 *
 * **Gradually.** vikt_prune_schedule() gives the sparsity of the cubic
 * schedule of Zhu and Gupta (2017, "To prune, or not to prune"):
 * s_t = s_f + (s_i − s_f)·(1 − (t − t₀)/(n·Δt))³ at t = t₀, t₀ + Δt, …,
 * t₀ + n·Δt:
 * @code
 * for (int64_t step = 0; step < steps; step++) {
 *     double s;
 *     if (vikt_prune_schedule(m, step, 0.0, 0.9, 1000, 100, 50, &s) == 1)
 *         vikt_prune_magnitude(m, NULL, s, VIKT_PRUNE_GLOBAL);
 *     // forward, backward, vikt_optimizer_step() ...
 * }
 * @endcode
 *
 * vikt_prune_report() prints the sparsity of every parameter,
 * vikt_prune_count() counts the zeros of a selection, vikt_prune_mask()
 * reads a mask, and vikt_prune_remove() drops masks and leaves the zeros in
 * place (the pruning becomes permanent and the values free to train).
 */

/** @brief Where vikt_prune_magnitude() compares magnitudes. */
typedef enum vikt_prune_scope {
    /** Each selected tensor loses round(s·n) of its own n values. */
    VIKT_PRUNE_PER_TENSOR = 0,
    /** One threshold across all selected tensors: round(s·N) of their N
     *  values together, so tensors end at different sparsities. */
    VIKT_PRUNE_GLOBAL = 1
} vikt_prune_scope;

/**
 * @brief Prune the weights of smallest magnitude to a target sparsity and
 *        keep them at zero through training, saving and loading.
 *
 * See @ref pruning for which tensors a pattern selects, how ties are broken
 * and how re-pruning keeps earlier masks. Nothing changes on failure.
 * @param[in] m        The model.
 * @param[in] pattern  A parameter name or module prefix (as
 *                     vikt_param_freeze()), or NULL (or "") for every
 *                     parameter of rank >= 2.
 * @param[in] sparsity The fraction of values to mask, in [0, 1].
 * @param[in] scope    ::VIKT_PRUNE_PER_TENSOR or ::VIKT_PRUNE_GLOBAL.
 * @return The number of parameters selected (>= 1), ::VIKT_ERR_NULL,
 *         ::VIKT_ERR_ARG (sparsity outside [0, 1] or NaN, unknown scope),
 *         ::VIKT_ERR_NOT_FOUND (nothing selected) or ::VIKT_ERR_NOMEM.
 */
VIKT_API int64_t vikt_prune_magnitude(vikt_model *m, const char *pattern, double sparsity,
                                      vikt_prune_scope scope);

/**
 * @brief The target sparsity of the gradual (cubic) pruning schedule at a
 *        step, and whether the step is one at which to prune.
 *
 * Pruning happens at steps t₀ + j·Δt for j = 0 … n, where the sparsity is
 * s_f + (s_i − s_f)·(1 − j/n)³: exactly s_i at t₀ and s_f at t₀ + n·Δt. Between those
 * steps the value of the last one holds; before t₀ it is 0, after the last
 * it is s_f.
 * @param[in]  m        The model that receives the error message; may be
 *                      NULL.
 * @param[in]  step     The training step t, >= 0.
 * @param[in]  initial  s_i, in [0, 1].
 * @param[in]  final    s_f, in [s_i, 1].
 * @param[in]  begin    t₀, >= 0.
 * @param[in]  every    Δt, >= 1.
 * @param[in]  count    n, >= 1 (the steps t₀ … t₀ + n·Δt must fit in
 *                      int64_t).
 * @param[out] sparsity Receives the target sparsity at @p step.
 * @return 1 when @p step is a pruning step, 0 when not, ::VIKT_ERR_NULL
 *         (@p sparsity is NULL) or ::VIKT_ERR_ARG.
 */
VIKT_API int vikt_prune_schedule(vikt_model *m, int64_t step, double initial, double final,
                                 int64_t begin, int64_t every, int64_t count, double *sparsity);

/**
 * @brief Drop the masks of parameters: their zeros stay, but training may
 *        move them again (torch's prune.remove).
 * @param[in] m       The model.
 * @param[in] pattern A parameter name or module prefix (any rank), or NULL
 *                    for every parameter.
 * @return The number of masks dropped (0 when none of the matched
 *         parameters had one), ::VIKT_ERR_NULL or ::VIKT_ERR_NOT_FOUND (no
 *         parameter matches).
 */
VIKT_API int64_t vikt_prune_remove(vikt_model *m, const char *pattern);

/**
 * @brief A parameter's mask.
 * @param[in] t The tensor.
 * @return vikt_tensor_numel() bytes, 1 for a kept value and 0 for a pruned
 *         one, borrowed until the mask is dropped or replaced (a load or
 *         vikt_prune_remove()) or the tensor destroyed; NULL for a tensor
 *         that was never pruned, and for NULL.
 */
VIKT_API const uint8_t *vikt_prune_mask(const vikt_tensor *t);

/**
 * @brief Count the zeros of the parameters vikt_prune_magnitude() would
 *        select with @p pattern.
 * @param[in]  m       The model.
 * @param[in]  pattern As for vikt_prune_magnitude(); NULL for every
 *                     parameter of rank >= 2.
 * @param[out] zeros   Receives the number of values equal to 0 (either
 *                     sign), masked or not; may be NULL.
 * @param[out] numel   Receives the number of values; may be NULL.
 * @return The number of parameters selected (>= 1), ::VIKT_ERR_NULL or
 *         ::VIKT_ERR_NOT_FOUND (nothing selected).
 */
VIKT_API int64_t vikt_prune_count(vikt_model *m, const char *pattern, int64_t *zeros,
                                  int64_t *numel);

/**
 * @brief Write a sparsity table of every parameter: name, shape, count,
 *        zeros, sparsity (zeros / count) and masked values ("-" without a
 *        mask), then the totals, like snprintf.
 * @param[in]  m    The model.
 * @param[out] buf  Receives at most @p size bytes, NUL-terminated; may be
 *                  NULL when @p size is 0.
 * @param[in]  size Capacity of @p buf.
 * @return The length of the whole table (excluding the NUL; it was truncated
 *         if this is >= @p size), or ::VIKT_ERR_NULL.
 */
VIKT_API int64_t vikt_prune_report(const vikt_model *m, char *buf, size_t size);

/* ------------------------------------------------------------------ files */

/**
 * @page file_format Files: the safetensors format and on-disk guarantees
 *
 * vikt stores parameters in **safetensors**, the format PyTorch and Hugging
 * Face users exchange weights in: an unsigned 64-bit little-endian header
 * length N, N bytes of UTF-8 JSON `{name: {"dtype", "shape", "data_offsets":
 * [begin, end]}, "__metadata__": {string: string}}`, then the data section,
 * row-major and little-endian.
 *
 * @section file_format_write What vikt_save() writes
 *
 * - Every parameter, then every buffer, in creation order, as `F32`, with
 *   PyTorch's names and layouts (a dense weight "fc1.weight" is
 *   [out, in], as in torch.nn.Linear), so the file loads into the equivalent
 *   torch.nn module with `load_state_dict`.
 * - The header padded with spaces so the data starts at a multiple of 8.
 * - Metadata `"format": "pt"`; `"vikt.crc32c.<name>"`: the CRC32C
 *   (Castagnoli polynomial 0x1EDC6F41) of each tensor's bytes as 8 lowercase
 *   hex digits; `"vikt.kind.<name>": "buffer"` for each buffer;
 *   `"vikt.mask.<name>"` for each pruned parameter (see @ref pruning): its
 *   mask as a bitmap, value i in bit i % 8 of byte i / 8 (1 kept, 0 pruned;
 *   the unused high bits of the last byte 0), in base64 (RFC 4648, with
 *   padding). Masks go into the metadata, not into more tensors, so the
 *   file still loads into the torch module with a strict `load_state_dict`.
 * - The same model gives the same bytes.
 *
 * @section file_format_read What vikt_load() reads
 *
 * - `F32`, `F16` and `BF16` (converted exactly to float32) and `F64` (rounded
 *   to the nearest float32). Files of every safetensors dtype parse; a tensor
 *   of another dtype, or of rank above 4, cannot go into a model and counts
 *   as mismatched.
 * - Files written by PyTorch, Hugging Face or any conforming writer, with or
 *   without vikt's metadata; a tensor with a `vikt.crc32c.<name>` entry has
 *   its data checked before anything is loaded, so a flipped bit is
 *   ::VIKT_ERR_FORMAT naming the tensor, not weights trained on.
 * - Tensors whose `vikt.kind.<name>` is neither "parameter" nor "buffer"
 *   (reserved for checkpoints) are left alone and counted as
 *   ::VIKT_LOAD_IGNORED.
 * - Kinds are matched when the file marks them: in a file with at least one
 *   `vikt.kind.<name>` entry (vikt_save() writes one per buffer), a tensor
 *   without one is a parameter, and a file buffer whose name is a model
 *   parameter, or the reverse, counts as ::VIKT_LOAD_MISMATCHED (in strict
 *   mode ::VIKT_ERR_SHAPE, the message naming the tensor and both kinds).
 *   A file without any `vikt.kind.` entry (PyTorch's `state_dict`, which
 *   does not tell buffers from parameters, or a vikt model without buffers)
 *   is matched by name alone. vikt_checkpoint_load() and
 *   vikt_fedavg_files() match kinds the same way.
 * - A parameter loaded from the file gets the mask of its
 *   `vikt.mask.<name>` entry (and its masked values are set to 0), or loses
 *   its mask when the file has none. A mask entry naming no tensor or a
 *   buffer, or whose text is not the canonical base64 of a bitmap of the
 *   tensor's size, is ::VIKT_ERR_FORMAT.
 *
 * @section file_format_strict A strict reader
 *
 * Every file is validated in full before any value is used, and a malformed
 * one is ::VIKT_ERR_FORMAT with a message naming the file and the problem:
 * a file shorter than 8 bytes; a header length that overflows 8 + N, is above
 * 100,000,000 bytes or runs past the end of the file; a header that is not
 * UTF-8, not JSON, nested more than 64 deep or not an object; an empty or
 * duplicate name; an unknown dtype; a missing, repeated or unknown field; a
 * shape that is not non-negative integers or whose element count overflows;
 * a byte span other than elements × dtype size; offsets that do not start at
 * 0, are reversed, overlap, leave a gap, or do not end exactly at the end of
 * the file (a truncated file); metadata that is not string to string, or
 * vikt metadata naming no tensor. A failed read is ::VIKT_ERR_IO. Reading
 * never crashes, never reads outside the file, and allocates at most the
 * header's length (never more than the file's size) plus 128 KiB, besides
 * the tensors and pruning masks it creates. The reader is fuzzed with
 * libFuzzer.
 *
 * @section file_format_crash Crash-safe saving
 *
 * vikt_save() writes a new file "<path>.tmp-XXXXXX" in the target
 * directory, fsyncs it, renames it over @p path and fsyncs the directory.
 * A failed write, fsync, close or rename removes the temporary and leaves
 * the previous file byte for byte as it was; only a failure of the final
 * directory fsync is reported with the new file already in place. A process
 * killed or a machine losing power mid-save leaves the old file or the new
 * one, never a mix (a stale temporary may remain and can be deleted). The
 * new file keeps the old one's permission bits. (POSIX file systems;
 * Windows is not supported yet.) vikt_checkpoint_save() saves the same way.
 *
 * @section file_format_checkpoint Checkpoints
 *
 * vikt_checkpoint_save() writes everything a training run needs to go on
 * exactly where it stopped: training N steps, saving, loading into a fresh
 * model and optimizer (in the same or another process) and training M more
 * gives bitwise the parameters of N + M uninterrupted steps, for every rule,
 * schedule and clipping setting, given the same build, GEMM kernel
 * (`VIKT_ISA`), thread count and input batches. A checkpoint is a safetensors
 * file as above, plus:
 *
 * - One F32 tensor per initialized optimizer state buffer, named
 *   `optimizer.<buffer>.<parameter>` with `"vikt.kind.<name>": "optimizer"`;
 *   the buffers are torch's state keys: SGD `momentum_buffer`; AdaGrad `sum`;
 *   RMSProp `square_avg`, `momentum_buffer`, `grad_avg`; Adam and AdamW
 *   `exp_avg`, `exp_avg_sq`, `max_exp_avg_sq`. vikt_load() ignores them, so
 *   it reads a checkpoint's weights like any other file.
 * - Metadata, all strings: `vikt.checkpoint.version` ("1");
 *   `vikt.rng.state` and `vikt.rng.inc`, the model's PCG32 generator as 16
 *   hexadecimal digits each; and with an optimizer `vikt.optimizer` (the rule:
 *   "SGD", "AdaGrad", "RMSProp", "Adam" or "AdamW"), `vikt.optimizer.<name>`
 *   for each hyperparameter the rule uses (names as in ::vikt_optim_param,
 *   lowercase: "lr", "weight_decay", "clip_norm", "schedule", …),
 *   `vikt.optimizer.step` (the schedule position), `vikt.optimizer.skipped_steps`,
 *   `vikt.optimizer.current_lr` (for readers; derived, not read back) and,
 *   per parameter the optimizer has updated, `vikt.optimizer.state.<parameter>`:
 *   its own step count t followed by the names of its initialized buffers,
 *   space-separated ("20 exp_avg exp_avg_sq").
 * - Real numbers exactly, in C99's hexadecimal floating form
 *   ("0x1.999999999999ap-4", as strtod() in the C locale and Python's
 *   float.fromhex() read it), written without the locale; counts in decimal.
 * - `vikt.checkpoint.crc32c`: the XOR of the CRC32C of each of the other
 *   checkpoint pairs (key, NUL, value, NUL; every `vikt.` key except the
 *   per-tensor `vikt.crc32c.` and `vikt.kind.` ones), so a corrupt header is
 *   caught like corrupt data.
 *
 * vikt_checkpoint_load() is strict: the version, the metadata CRC and every
 * tensor's CRC32C, every model tensor by name and shape (as
 * ::VIKT_LOAD_STRICT), the optimizer's rule, every hyperparameter (in the
 * ranges vikt_optimizer_set() accepts), every listed state tensor (present,
 * F32, of its parameter's shape) and, with an optimizer, no tensor it would
 * leave behind. All of it is checked before anything changes. Gradients are
 * not saved; clear them before the next step as usual (vikt_zero_grad()).
 *
 * @section file_format_tool Looking into files from the shell
 *
 * The `vikt` program (built by `make`, installed by `make install`) reads
 * any safetensors file with this reader: `vikt inspect [--stats] FILE`
 * lists every tensor (name, dtype, shape, count, and with `--stats` the
 * statistics of vikt_stats_compute()), and `vikt diff [--atol X] A B`
 * compares two files tensor by tensor (max |a - b|, cosine similarity,
 * names in one file only, shape and dtype mismatches), exiting 0, 1 or 2
 * as diff(1) does. `vikt --help` says more.
 */

/** @brief How vikt_load() matches a file against a model that already has
 *         parameters or buffers. */
typedef enum vikt_load_mode {
    /** Every name of the model must be in the file with the same shape and a
     *  float dtype, and the file may hold no other name; otherwise nothing
     *  is loaded. */
    VIKT_LOAD_STRICT = 0,
    /** Load the names that match; report the missing, unexpected and
     *  mismatched ones (vikt_load_report()) and leave them alone. */
    VIKT_LOAD_PARTIAL = 1
} vikt_load_mode;

/** @brief Counts of the last load, read with vikt_load_report_count(). */
typedef enum vikt_load_stat {
    VIKT_LOAD_LOADED = 0,     /**< Tensors whose values were copied in (created ones included). */
    VIKT_LOAD_CREATED = 1,    /**< Of those, tensors created because the model was empty. */
    VIKT_LOAD_MISSING = 2,    /**< Model tensors the file lacks. */
    VIKT_LOAD_UNEXPECTED = 3, /**< File tensors the model lacks. */
    VIKT_LOAD_MISMATCHED = 4, /**< In both with another shape or kind (parameter or
                                   buffer), or a dtype or rank a vikt tensor cannot hold. */
    VIKT_LOAD_IGNORED = 5     /**< File tensors of another kind (see @ref file_format). */
} vikt_load_stat;

/**
 * @brief Save every parameter and buffer to a safetensors file, crash-safely.
 *
 * See @ref file_format for the format and the guarantees. Nothing in the model
 * changes; its random generator is not used.
 * @param[in] m    The model.
 * @param[in] path The file to create or replace; its directory must exist.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL, ::VIKT_ERR_ARG (a name that is not
 *         UTF-8 or is "__metadata__"), ::VIKT_ERR_NOMEM or ::VIKT_ERR_IO;
 *         on failure the previous file is untouched and the model's error
 *         message names the file and the failed step.
 */
VIKT_API int vikt_save(vikt_model *m, const char *path);

/**
 * @brief Load parameters and buffers from a safetensors file by name.
 *
 * Into a model without parameters or buffers, every tensor of the file is
 * created (a parameter that requires a gradient, or a buffer when the file
 * says so) with the file's values; layers called afterwards find them by
 * name, so the shapes they ask for must match. Into any other model, values
 * are copied into the tensors of the same name, as @p mode says; the model
 * is never extended.
 *
 * Nothing changes unless the load succeeds: the file is validated, names
 * and shapes are matched and every CRC32C is checked (a first read of the
 * data) before any value is copied (a second read). Only a read error during
 * that second read, or the file changing between the two, can leave existing
 * tensors partly loaded (::VIKT_ERR_IO or ::VIKT_ERR_FORMAT; created ones are
 * removed). The report (vikt_load_report()) and the counts are replaced on
 * every call, failed ones included.
 * @param[in] m    The model.
 * @param[in] path The file.
 * @param[in] mode ::VIKT_LOAD_STRICT or ::VIKT_LOAD_PARTIAL.
 * A name that is a buffer in the file and a parameter in the model, or the
 * reverse, is mismatched when the file marks kinds (see
 * @ref file_format_read); a file from PyTorch is matched by name alone.
 * @return ::VIKT_OK; ::VIKT_ERR_NULL; ::VIKT_ERR_ARG (unknown mode);
 *         ::VIKT_ERR_FORMAT (a malformed or corrupt file, or in strict mode a
 *         dtype the model cannot hold); ::VIKT_ERR_IO; ::VIKT_ERR_NOMEM; in
 *         strict mode ::VIKT_ERR_NOT_FOUND (a missing or unexpected name) or
 *         ::VIKT_ERR_SHAPE (a shape or kind mismatch), for the first problem
 *         found.
 */
VIKT_API int vikt_load(vikt_model *m, const char *path, vikt_load_mode mode);

/**
 * @brief vikt_load() from a safetensors file already in memory (a game's
 *        asset pack, a network buffer, a file mapped by the caller).
 * @param[in] m    The model.
 * @param[in] data @p size bytes, only read during the call (borrowed); may be
 *                 NULL when @p size is 0.
 * @param[in] size Bytes at @p data.
 * @param[in] mode ::VIKT_LOAD_STRICT or ::VIKT_LOAD_PARTIAL.
 * @return As vikt_load(); messages name the file "<memory>".
 */
VIKT_API int vikt_load_buffer(vikt_model *m, const void *data, size_t size,
                              vikt_load_mode mode);

/**
 * @brief The report of the last vikt_load(), vikt_load_buffer() or
 *        vikt_checkpoint_load(), like snprintf.
 *
 * The first line is the error of a failed load, or a summary ("vikt_load:
 * PATH: loaded 4 tensors (59 values), created 0; 1 missing, ..."). One line
 * follows per problem, in the form `missing NAME  parameter 10x32, not in the
 * file`, `unexpected NAME  file 5x32 F32, not in the model` or `mismatched
 * NAME  file 32x64 F32, model parameter 32x128`. The text is kept to 64 KiB
 * (a last line says how many lines were left out); the counts are exact.
 * @param[in]  m    The model.
 * @param[out] buf  Receives at most @p size bytes, NUL-terminated; may be
 *                  NULL when @p size is 0.
 * @param[in]  size Capacity of @p buf.
 * @return The length of the whole report (excluding the NUL; truncated if
 *         this is >= @p size), 0 before any load, or ::VIKT_ERR_NULL.
 */
VIKT_API int64_t vikt_load_report(const vikt_model *m, char *buf, size_t size);

/**
 * @brief A count of the last load.
 * @param[in] m    The model.
 * @param[in] stat A ::vikt_load_stat.
 * @return The count (0 before any load), ::VIKT_ERR_NULL or ::VIKT_ERR_ARG
 *         (unknown @p stat).
 */
VIKT_API int64_t vikt_load_report_count(const vikt_model *m, vikt_load_stat stat);

/* ------------------------------------------------------------------ data */

/**
 * @page data_guide Data: datasets, loaders and mini-batches
 *
 * A ::vikt_dataset is n samples, each a float32 feature tensor of the same
 * shape (rank 1 to 3, so a batch is rank 2 to 4), with either an int32 class
 * label, a row of float targets of a fixed width, or nothing (for
 * prediction). It belongs to the model it was made with: its memory comes
 * from the model's allocator, its errors are the model's sticky error
 * (vikt_model_errmsg()), its shuffles draw from the model's generator (the
 * same seed gives the same order), and it must be destroyed before the model.
 *
 * A dataset has an **order**: a list of sample indices that batches follow.
 * vikt_dataset_shuffle() redraws it; vikt_dataset_split() makes two datasets
 * whose orders are disjoint parts of another's, sharing its samples without
 * copying them. Batch @c b of size @c B is positions [b·B, b·B + B) of the
 * order: vikt_dataset_input() gathers them into a step tensor (the step
 * arena, so a fixed-size loop allocates nothing after the first step) and
 * vikt_dataset_copy_batch() into caller buffers.
 *
 * @section data_csv CSV files (vikt_dataset_load_csv())
 *
 * - One sample per line, fields split by a one-byte delimiter, no quoting.
 *   Lines end in LF or CRLF; the last line may lack its end. Lines that are
 *   empty or hold only spaces and tabs are skipped anywhere. A UTF-8
 *   byte-order mark at the start is skipped (columns count from after it).
 *   An optional first line is a header and is not read.
 * - Every field is a decimal number: optional spaces or tabs, an optional
 *   sign, digits with an optional decimal point (at least one digit), an
 *   optional exponent (`e` or `E`, optional sign, digits), optional spaces or
 *   tabs. Nothing else: no hexadecimal, `inf`, `nan`, thousands separators or
 *   quotes, and no value whose magnitude overflows float32. The decimal
 *   point is '.' whatever the program's LC_NUMERIC locale.
 * - Every line has the same number of fields (at least 2) as the first data
 *   line. The label column holds whole numbers from 0 to 2147483646, below
 *   @c classes when that is given; the other columns are the features, in
 *   file order, a sample of shape [fields − 1].
 * - Errors are ::VIKT_ERR_FORMAT with the message
 *   `vikt_dataset_load_csv: FILE:LINE:COLUMN: PROBLEM` (1-based line of the
 *   file, header included, and 1-based byte column of the field), for: a
 *   field that is not a number, an empty field, a value out of float32's
 *   range, a line with too few or too many fields, a label that is not a
 *   whole number in range, and a file with no data line (`FILE:1:1`).
 *   A file that cannot be opened or read is ::VIKT_ERR_IO (`FILE: reason`).
 *   A bad field is never read as zero.
 *
 * @section data_idx IDX files (vikt_dataset_load_idx())
 *
 * The format of MNIST and Fashion-MNIST, uncompressed (gunzip the `.gz`
 * files first): two zero bytes, a type byte (only 0x08, unsigned bytes, is
 * read), a byte with the number of dimensions, each dimension as a
 * big-endian 32-bit count, then the values row-major.
 * - The images file has 2 to 4 dimensions, the first being the sample count
 *   (MNIST: magic 0x00000803, [60000, 28, 28]). A sample of two dimensions
 *   [H, W] gets a channel axis, [1, H, W], so a batch [B, 1, H, W] goes
 *   straight into vikt_conv2d() (vikt_flatten() it for a dense layer);
 *   other samples keep their dimensions. Each byte v becomes v / 255.0f, in
 *   [0, 1].
 * - The labels file (magic 0x00000801) has one dimension equal to the
 *   images' sample count; each byte is a class label, and the class count is
 *   the largest label + 1.
 * - Errors are ::VIKT_ERR_FORMAT naming the file and the byte offset:
 *   `vikt_dataset_load_idx: FILE: byte OFFSET: PROBLEM` for a bad magic
 *   (type or dimension count), a zero dimension, a size that overflows, a
 *   truncated file (expected and actual sizes), bytes after the data, and
 *   sample counts that differ between the two files.
 */

/** @brief A dataset: samples, targets and an order (see @ref data_guide). */
typedef struct vikt_dataset vikt_dataset;

/**
 * @brief A dataset over caller arrays, which are borrowed, not copied.
 *
 * The arrays must stay valid and unchanged until the dataset and every
 * dataset split from it are destroyed. The order starts as 0, 1, …, n − 1.
 * @param[in]  m            The model that owns the dataset.
 * @param[in]  n            Samples, >= 1.
 * @param[in]  rank         Rank of one sample's features, 1 to 3.
 * @param[in]  shape        @p rank sizes, each >= 1.
 * @param[in]  features     n × prod(shape) floats, sample after sample.
 * @param[in]  labels       n class labels, each >= 0, or NULL.
 * @param[in]  targets      n × @p target_width floats, or NULL; at most one
 *                          of @p labels and @p targets may be given.
 * @param[in]  target_width Targets per sample (>= 1 with @p targets, else 0).
 * @param[out] out          Receives the dataset; NULL on failure.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL, ::VIKT_ERR_ARG (recorded on the model,
 *         naming the argument) or ::VIKT_ERR_NOMEM.
 */
VIKT_API int vikt_dataset_create(vikt_model *m, int64_t n, int rank, const int64_t *shape,
                                 const float *features, const int32_t *labels,
                                 const float *targets, int64_t target_width,
                                 vikt_dataset **out);

/**
 * @brief Load a numeric CSV file with a class-label column into a dataset
 *        that owns its data (format and errors: @ref data_csv).
 * @param[in]  m            The model that owns the dataset.
 * @param[in]  path         The file.
 * @param[in]  header       Non-zero if the first line is a header to skip.
 * @param[in]  label_column The label's field: 0-based, or negative to count
 *                          from the end (-1 is the last field).
 * @param[in]  delimiter    The field separator, e.g. ',' ';' '\\t' or ' ';
 *                          not a digit, '+', '-', '.', 'e', 'E', CR or LF.
 * @param[in]  classes      The number of classes (labels must be below it),
 *                          or 0 to take the largest label + 1.
 * @param[out] out          Receives the dataset; NULL on failure.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL, ::VIKT_ERR_ARG (bad delimiter,
 *         classes, or a label column outside the fields), ::VIKT_ERR_IO,
 *         ::VIKT_ERR_FORMAT or ::VIKT_ERR_NOMEM; the model's message says
 *         where (`FILE:LINE:COLUMN: problem`).
 */
VIKT_API int vikt_dataset_load_csv(vikt_model *m, const char *path, int header,
                                   int label_column, int delimiter, int64_t classes,
                                   vikt_dataset **out);

/**
 * @brief Load IDX image and label files (MNIST, Fashion-MNIST) into a
 *        dataset that owns its data (format and errors: @ref data_idx).
 * @param[in]  m           The model that owns the dataset.
 * @param[in]  images_path The images file (uncompressed).
 * @param[in]  labels_path The labels file, or NULL for a dataset without
 *                         labels.
 * @param[out] out         Receives the dataset; NULL on failure.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL, ::VIKT_ERR_IO, ::VIKT_ERR_FORMAT or
 *         ::VIKT_ERR_NOMEM; the model's message names the file and offset.
 */
VIKT_API int vikt_dataset_load_idx(vikt_model *m, const char *images_path,
                                   const char *labels_path, vikt_dataset **out);

/**
 * @brief Destroy a dataset. Samples shared with datasets split from it stay
 *        until the last of them is destroyed.
 * @param[in] ds The dataset, or NULL (nothing happens).
 */
VIKT_API void vikt_dataset_destroy(vikt_dataset *ds);

/**
 * @brief The number of samples (the length of the order).
 * @param[in] ds The dataset.
 * @return The count, or ::VIKT_ERR_NULL.
 */
VIKT_API int64_t vikt_dataset_size(const vikt_dataset *ds);

/**
 * @brief The shape of one sample's features.
 * @param[in]  ds    The dataset.
 * @param[out] shape Receives rank sizes (room for 3), or NULL.
 * @return The rank (1 to 3), or ::VIKT_ERR_NULL.
 */
VIKT_API int vikt_dataset_feature_shape(const vikt_dataset *ds, int64_t *shape);

/**
 * @brief The number of classes of a labelled dataset.
 * @param[in] ds The dataset.
 * @return The count given to the loader, or the largest label + 1 (over
 *         all samples it shares); 0 without labels; ::VIKT_ERR_NULL.
 */
VIKT_API int64_t vikt_dataset_num_classes(const vikt_dataset *ds);

/**
 * @brief The number of float targets per sample.
 * @param[in] ds The dataset.
 * @return The width, 0 for labels or no targets, or ::VIKT_ERR_NULL.
 */
VIKT_API int64_t vikt_dataset_target_width(const vikt_dataset *ds);

/**
 * @brief Redraw the order as a uniformly random permutation of its
 *        samples (Fisher–Yates over the model's generator, so the same seed
 *        and calls give the same order everywhere). Allocates nothing.
 * @param[in,out] ds The dataset.
 * @return ::VIKT_OK or ::VIKT_ERR_NULL.
 */
VIKT_API int vikt_dataset_shuffle(vikt_dataset *ds);

/**
 * @brief Split a dataset into a training and a validation dataset.
 *
 * The samples of @p ds are permuted with the model's generator; the first
 * n − @p val_count go to @p train and the rest to @p val, so the two are
 * disjoint, cover @p ds and are the same for the same seed. Both share the
 * samples of @p ds (nothing is copied) and may outlive it. @p ds is not
 * changed.
 * @param[in]  ds        The dataset.
 * @param[in]  val_count Samples for validation, 1 to n − 1.
 * @param[out] train     Receives the training part; NULL on failure.
 * @param[out] val       Receives the validation part; NULL on failure.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL, ::VIKT_ERR_ARG or ::VIKT_ERR_NOMEM.
 */
VIKT_API int vikt_dataset_split(const vikt_dataset *ds, int64_t val_count,
                                vikt_dataset **train, vikt_dataset **val);

/**
 * @brief Rescale every stored feature to x · @p scale + @p shift (e.g.
 *        pixels 0..16 to [0, 1]), in the samples shared with every dataset
 *        split from the same load.
 * @param[in,out] ds    A dataset made by a loader.
 * @param[in]     scale Finite factor.
 * @param[in]     shift Finite offset.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL, ::VIKT_ERR_ARG (not finite) or
 *         ::VIKT_ERR_STATE (the data is the caller's: change it there).
 */
VIKT_API int vikt_dataset_scale(vikt_dataset *ds, float scale, float shift);

/**
 * @brief Copy the samples at positions [@p start, @p start + @p count) of
 *        the order into caller buffers.
 * @param[in]  ds       The dataset.
 * @param[in]  start    First position, >= 0.
 * @param[in]  count    Samples, >= 1, with @p start + @p count <= n.
 * @param[out] features count × feature size floats, or NULL to skip.
 * @param[out] labels   count labels, or NULL to skip (must be NULL when the
 *                      dataset has none).
 * @param[out] targets  count × target width floats, or NULL to skip (must be
 *                      NULL when the dataset has none).
 * @return ::VIKT_OK, ::VIKT_ERR_NULL or ::VIKT_ERR_ARG (recorded on the
 *         model).
 */
VIKT_API int vikt_dataset_copy_batch(const vikt_dataset *ds, int64_t start, int64_t count,
                                     float *features, int32_t *labels, float *targets);

/**
 * @brief A step tensor [count, feature shape…] of the features at positions
 *        [@p start, @p start + @p count) of the order, made in the model's
 *        step arena like vikt_input().
 * @param[in] ds    The dataset.
 * @param[in] start First position, >= 0.
 * @param[in] count Samples, >= 1, with @p start + @p count <= n.
 * @return The tensor (valid until the next vikt_step_begin()), or NULL with
 *         the error recorded on the model.
 */
VIKT_API vikt_tensor *vikt_dataset_input(const vikt_dataset *ds, int64_t start,
                                         int64_t count);

/**
 * @brief A step tensor [count, target width] of the float targets at
 *        positions [@p start, @p start + @p count) of the order.
 * @param[in] ds    The dataset; it must have float targets.
 * @param[in] start First position, >= 0.
 * @param[in] count Samples, >= 1, with @p start + @p count <= n.
 * @return The tensor, or NULL with the error recorded on the model.
 */
VIKT_API vikt_tensor *vikt_dataset_target_input(const vikt_dataset *ds, int64_t start,
                                                int64_t count);

/* --------------------------------------------------------------- training */

/**
 * @page fit_guide Training: the fit loop, progress, early stopping
 *
 * A ::vikt_trainer runs the loop every training program writes: for each
 * epoch, shuffle the training set (::VIKT_FIT_SHUFFLE), and for each batch
 * vikt_step_begin(), vikt_zero_grad(), vikt_dataset_input(), the caller's
 * ::vikt_forward_fn, the loss (::VIKT_FIT_LOSS) plus any penalty
 * (vikt_trainer_set_penalty()), vikt_backward() and vikt_optimizer_step(); then measure the validation set with
 * vikt_trainer_evaluate(). Nothing in it is private: the same calls
 * written by hand give the same result (see examples/demo.c).
 *
 * @section fit_metrics Metrics
 *
 * The loss of an epoch is the mean over its samples (each batch's mean loss
 * weighted by its size). Accuracy is the share of rows whose largest logit
 * is the label (cross-entropy), or of elements where (logit > 0) equals
 * (target >= 0.5) (binary cross-entropy); it is NaN for mean squared error.
 * Validation metrics are measured after each epoch in evaluation mode: no
 * tape (vikt_set_grad_enabled() 0), dropout off (vikt_set_training() 0),
 * parameters unchanged; both modes are put back afterwards.
 *
 * @section fit_progress Progress
 *
 * Progress goes to stderr, or to a ::vikt_write_fn (vikt_trainer_set_output()).
 * ::VIKT_PROGRESS_AUTO redraws one line in place (carriage return and
 * erase-line, at most every 0.1 s) when the output is stderr and stderr is a
 * terminal, and writes plain lines otherwise. A step line reads
 * `epoch 3/10  step 120/938  loss 0.4123  1234 samples/s  ETA 0:42` (running
 * mean loss of the epoch, its speed, the time left in the epoch); plain mode
 * writes one every ::VIKT_FIT_PRINT_EVERY steps (none by default). Every
 * epoch ends with a line
 * `epoch 3/10  loss 0.4123  accuracy 0.8812  val_loss 0.4501  val_accuracy 0.8790  2.1s`
 * (accuracy fields only where defined, val fields only with a validation
 * set), and an early stop with
 * `early stopping: val_loss did not improve for 2 epochs; best epoch 3 (val_loss 0.4501), parameters restored`.
 * ::VIKT_PROGRESS_OFF writes nothing.
 *
 * @section fit_early Early stopping
 *
 * With ::VIKT_FIT_PATIENCE p > 0 and a validation set, an epoch improves
 * when its validation loss is below the best so far minus
 * ::VIKT_FIT_MIN_DELTA; after p epochs in a row without improvement the fit
 * stops. With ::VIKT_FIT_RESTORE_BEST (the default) the values of every
 * parameter and buffer of the best epoch are copied back when the fit ends,
 * early or not (optimizer state is not rewound). The copy is allocated once,
 * during the first step.
 *
 * @section fit_memory Memory
 *
 * vikt_trainer_fit() allocates its label buffer when it starts and the
 * best-epoch copy during the first step; together with the step arena and
 * the optimizer state (made by the first step), every later step and
 * evaluation of the same batch size makes no allocator call. The log file
 * and the progress output use the C library's stdio.
 */

/** @brief A training loop with its settings and its last results. */
typedef struct vikt_trainer vikt_trainer;

/**
 * @brief The model definition the trainer runs: predictions from a batch.
 * @param[in] m  The model.
 * @param[in] x  The batch's features, [batch, feature shape…] (a step tensor).
 * @param[in] ud The user data given to vikt_trainer_create().
 * @return Logits or predictions: [batch, classes] for cross-entropy, the
 *         targets' shape [batch, width] otherwise; NULL on error (recorded
 *         on the model, as ops do).
 */
typedef vikt_tensor *(*vikt_forward_fn)(vikt_model *m, vikt_tensor *x, void *ud);

/** @brief Events a ::vikt_fit_callback_fn is called for. */
typedef enum vikt_fit_event {
    VIKT_FIT_STEP_END = 0, /**< After each optimizer step. */
    VIKT_FIT_EPOCH_END = 1 /**< After each epoch's validation and bookkeeping. */
} vikt_fit_event;

/**
 * @brief Called by vikt_trainer_fit() after each step and each epoch;
 *        vikt_trainer_get() reads where the fit is and what it measured.
 * @param[in] t     The trainer.
 * @param[in] event A ::vikt_fit_event.
 * @param[in] ud    The user data given to vikt_trainer_set_callback().
 * @return 0 to go on; non-zero to stop the fit after this step or epoch
 *         (it then returns ::VIKT_OK, with ::VIKT_FIT_STOPPED 2).
 */
typedef int (*vikt_fit_callback_fn)(vikt_trainer *t, vikt_fit_event event, void *ud);

/**
 * @brief Receives progress text.
 * @param[in] ud   The user data given to vikt_trainer_set_output().
 * @param[in] text @p len bytes (also NUL-terminated), valid during the call.
 * @param[in] len  Bytes of text.
 */
typedef void (*vikt_write_fn)(void *ud, const char *text, size_t len);

/** @brief The loss a trainer minimizes. */
typedef enum vikt_loss_kind {
    VIKT_LOSS_CROSS_ENTROPY = 0, /**< vikt_cross_entropy_loss() on class labels. */
    VIKT_LOSS_MSE = 1,           /**< vikt_mse_loss() on float targets. */
    VIKT_LOSS_BCE_WITH_LOGITS = 2 /**< vikt_bce_with_logits_loss() on float targets. */
} vikt_loss_kind;

/** @brief How progress is shown (@ref fit_progress). */
typedef enum vikt_progress {
    VIKT_PROGRESS_OFF = 0,   /**< Nothing. */
    VIKT_PROGRESS_AUTO = 1,  /**< Redraw on a terminal, plain lines otherwise. */
    VIKT_PROGRESS_PLAIN = 2, /**< Plain lines. */
    VIKT_PROGRESS_REDRAW = 3 /**< Redraw one line in place. */
} vikt_progress;

/** @brief Settings (read and written) and results (read-only) of a trainer. */
typedef enum vikt_fit_param {
    VIKT_FIT_EPOCHS = 0,       /**< Epochs, >= 1; default 10. */
    VIKT_FIT_BATCH_SIZE = 1,   /**< Samples per step, >= 1; default 32. */
    VIKT_FIT_LOSS = 2,         /**< A ::vikt_loss_kind; default cross-entropy. */
    VIKT_FIT_SHUFFLE = 3,      /**< 1 (default): vikt_dataset_shuffle() the training set
                                    before every epoch; 0: keep its order. */
    VIKT_FIT_DROP_LAST = 4,    /**< 1: skip a last batch smaller than the batch size;
                                    0 (default): train on it. */
    VIKT_FIT_PATIENCE = 5,     /**< Early stopping after this many epochs without
                                    improvement, >= 0; 0 (default) is off. */
    VIKT_FIT_MIN_DELTA = 6,    /**< The decrease of validation loss that counts as
                                    improvement, >= 0; default 0. */
    VIKT_FIT_RESTORE_BEST = 7, /**< 1 (default) or 0: with early stopping, end with
                                    the best epoch's values. */
    VIKT_FIT_PROGRESS = 8,     /**< A ::vikt_progress; default auto. */
    VIKT_FIT_PRINT_EVERY = 9,  /**< Plain mode: a step line every this many steps,
                                    >= 0; default 0 (epoch lines only). */
    VIKT_FIT_EPOCH = 10,       /**< Read-only: the current (or last) epoch, from 1. */
    VIKT_FIT_STEP = 11,        /**< Read-only: the step within the epoch, from 1. */
    VIKT_FIT_STEPS_PER_EPOCH = 12, /**< Read-only: steps in each epoch. */
    VIKT_FIT_GLOBAL_STEP = 13, /**< Read-only: steps since the fit began. */
    VIKT_FIT_BATCH_LOSS = 14,  /**< Read-only: the loss of the last step. */
    VIKT_FIT_TRAIN_LOSS = 15,  /**< Read-only: the epoch's mean training loss so far. */
    VIKT_FIT_TRAIN_ACCURACY = 16, /**< Read-only: the epoch's training accuracy so far. */
    VIKT_FIT_VAL_LOSS = 17,    /**< Read-only: validation loss of the last epoch (NaN
                                    without a validation set). */
    VIKT_FIT_VAL_ACCURACY = 18, /**< Read-only: validation accuracy of the last epoch. */
    VIKT_FIT_BEST_EPOCH = 19,  /**< Read-only: the epoch of the lowest validation loss
                                    (0 before one is measured). */
    VIKT_FIT_BEST_VAL_LOSS = 20, /**< Read-only: that loss (NaN before). */
    VIKT_FIT_STOPPED = 21,     /**< Read-only: 0 ran all epochs, 1 early stopping,
                                    2 a callback asked. */
    VIKT_FIT_EPOCH_SECONDS = 22 /**< Read-only: wall time of the last epoch so far. */
} vikt_fit_param;

/**
 * @brief Create a trainer with the default settings.
 * @param[in]  m       The model.
 * @param[in]  opt     An optimizer of @p m, or NULL for a trainer that only
 *                     evaluates.
 * @param[in]  forward The model definition.
 * @param[in]  ud      Passed to @p forward.
 * @param[out] out     Receives the trainer; NULL on failure.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL or ::VIKT_ERR_NOMEM.
 */
VIKT_API int vikt_trainer_create(vikt_model *m, vikt_optimizer *opt, vikt_forward_fn forward,
                                 void *ud, vikt_trainer **out);

/**
 * @brief Destroy a trainer (before its model and optimizer).
 * @param[in] t The trainer, or NULL (nothing happens).
 */
VIKT_API void vikt_trainer_destroy(vikt_trainer *t);

/**
 * @brief Change a setting; the value is checked first.
 * @param[in,out] t     The trainer.
 * @param[in]     param A ::vikt_fit_param that is not read-only.
 * @param[in]     value The value (counts, flags and enums as whole numbers).
 * @return ::VIKT_OK, ::VIKT_ERR_NULL or ::VIKT_ERR_ARG (out of range,
 *         read-only or unknown; recorded on the model); on error nothing
 *         changes.
 */
VIKT_API int vikt_trainer_set(vikt_trainer *t, vikt_fit_param param, double value);

/**
 * @brief Read a setting or a result.
 * @param[in]  t     The trainer.
 * @param[in]  param A ::vikt_fit_param.
 * @param[out] value Receives the value.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL or ::VIKT_ERR_ARG (unknown).
 */
VIKT_API int vikt_trainer_get(const vikt_trainer *t, vikt_fit_param param, double *value);

/**
 * @brief Send progress text to @p writer instead of stderr.
 * @param[in,out] t     The trainer.
 * @param[in]     writer The writer, or NULL for stderr.
 * @param[in]     ud     Passed to @p writer.
 * @return ::VIKT_OK or ::VIKT_ERR_NULL.
 */
VIKT_API int vikt_trainer_set_output(vikt_trainer *t, vikt_write_fn writer, void *ud);

/**
 * @brief Call @p fn after every step and every epoch of a fit.
 * @param[in,out] t  The trainer.
 * @param[in]     fn The callback, or NULL for none.
 * @param[in]     ud Passed to @p fn.
 * @return ::VIKT_OK or ::VIKT_ERR_NULL.
 */
VIKT_API int vikt_trainer_set_callback(vikt_trainer *t, vikt_fit_callback_fn fn, void *ud);

/**
 * @brief A term added to the loss of every training step, such as
 *        vikt_ewc_penalty() (see @ref ewc_guide).
 * @param[in] m  The model.
 * @param[in] ud The user data given to vikt_trainer_set_penalty().
 * @return A one-element step tensor made by ops in this step, or NULL on
 *         error (recorded on the model, as ops do).
 */
typedef vikt_tensor *(*vikt_penalty_fn)(vikt_model *m, void *ud);

/**
 * @brief Add @p fn's result to the loss that each training step of the
 *        next fits minimizes.
 *
 * Called once per step, after the data loss, in the step; the backward pass
 * runs on the sum. The loss the trainer reports (::VIKT_FIT_BATCH_LOSS,
 * ::VIKT_FIT_TRAIN_LOSS, progress, log) stays the data loss, so it compares
 * with the validation loss; evaluation never calls @p fn.
 * @param[in,out] t  The trainer.
 * @param[in]     fn The penalty, or NULL for none.
 * @param[in]     ud Passed to @p fn.
 * @return ::VIKT_OK or ::VIKT_ERR_NULL.
 */
VIKT_API int vikt_trainer_set_penalty(vikt_trainer *t, vikt_penalty_fn fn, void *ud);

/**
 * @brief Write one CSV line per epoch to a file during the next fits.
 *
 * The file is created (or emptied) when a fit starts, gets the header
 * `epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds` and one
 * line per epoch, flushed as it is written; a value that is not defined
 * (accuracy for MSE, validation without a set) is an empty field.
 * @param[in,out] t    The trainer.
 * @param[in]     path The file (copied), or NULL to stop logging.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL or ::VIKT_ERR_NOMEM.
 */
VIKT_API int vikt_trainer_set_log(vikt_trainer *t, const char *path);

/**
 * @brief Train: epochs of mini-batch steps over @p train, each followed by
 *        a measurement of @p val (see @ref fit_guide).
 *
 * Datasets must belong to the trainer's model; cross-entropy needs labels,
 * the other losses float targets. Results are read with vikt_trainer_get()
 * during (from the callback) and after the fit.
 * @param[in,out] t     The trainer; it must have an optimizer.
 * @param[in,out] train The training set (its order is reshuffled).
 * @param[in]     val   The validation set, or NULL.
 * @return ::VIKT_OK (also when stopped early or by the callback);
 *         ::VIKT_ERR_NULL; ::VIKT_ERR_ARG (a dataset of another model, the
 *         wrong kind of targets, or no full batch with drop-last);
 *         ::VIKT_ERR_STATE (no optimizer, or the model already holds an
 *         error); ::VIKT_ERR_IO (the log file); or the error of a failed
 *         step, which the model holds with its message. The model's
 *         gradient and training modes are put back in every case.
 */
VIKT_API int vikt_trainer_fit(vikt_trainer *t, vikt_dataset *train, const vikt_dataset *val);

/**
 * @brief Measure the loss and accuracy of the model on a dataset in
 *        evaluation mode (no tape, dropout off, parameters and gradients
 *        unchanged), in batches of ::VIKT_FIT_BATCH_SIZE in the dataset's
 *        order.
 * @param[in,out] t        The trainer.
 * @param[in]     ds       The dataset.
 * @param[out]    loss     Receives the mean loss, or NULL.
 * @param[out]    accuracy Receives the accuracy (NaN for MSE), or NULL.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL, ::VIKT_ERR_ARG, ::VIKT_ERR_STATE,
 *         ::VIKT_ERR_NOMEM or a step's error (held by the model).
 */
VIKT_API int vikt_trainer_evaluate(vikt_trainer *t, const vikt_dataset *ds, double *loss,
                                   double *accuracy);

/* ------------------------------------------------------- continual learning */

/**
 * @page ewc_guide Continual learning: elastic weight consolidation
 *
 * Training a model on task B after task A overwrites what it learned on A
 * ("catastrophic forgetting"). Elastic weight consolidation (EWC; Kirkpatrick
 * et al. 2017, "Overcoming catastrophic forgetting in neural networks") adds
 * to task B's loss a quadratic penalty that holds each parameter near its
 * task-A value θ*, in proportion to how much task A's likelihood depends on
 * it, measured by the diagonal of the Fisher information F:
 *
 *     L_B(θ) + λ/2 · Σᵢ Fᵢ (θᵢ − θ*ᵢ)²
 *
 * A ::vikt_ewc does it in three steps:
 *
 * 1. **Accumulate** the Fisher on task A. vikt_ewc_accumulate() adds the
 *    square of every parameter's current gradient, elementwise, to a running
 *    sum (in double) and counts one call. Call it after the backward pass of
 *    the loss of **one sample**, −log p(y|x) (what vikt_cross_entropy_loss()
 *    of one row gives), and the result is the empirical Fisher
 *    Fᵢ = (1/N) Σₙ (∂ log p(yₙ|xₙ)/∂θᵢ)², the form of Kirkpatrick et al.
 *    Called after the backward pass of a **mini-batch's mean** loss it adds
 *    the square of the mean gradient ḡ instead: fewer backward passes, but
 *    near a minimum, where the per-sample gradients average to about zero,
 *    E[ḡ²] ≈ F/B for batches of B, so the estimate is about B times smaller
 *    (scale λ up to match) and only as good as that approximation.
 *    vikt_ewc_accumulate_dataset() runs either loop over a dataset with a
 *    ::vikt_forward_fn.
 * 2. **Consolidate** at the end of task A: vikt_ewc_consolidate() divides the
 *    sum by the number of calls, folds it into F, copies the parameters'
 *    current values as θ* and empties the sum for the next task.
 * 3. **Penalize** on task B: vikt_ewc_penalty() returns the penalty as a
 *    scalar step tensor recorded on the tape like any op, so
 *    `vikt_add(m, loss_b, vikt_ewc_penalty(ewc, lambda))` trains with it; its
 *    gradient is λ·Fᵢ·(θᵢ − θ*ᵢ). With a ::vikt_trainer, return it from a
 *    ::vikt_penalty_fn given to vikt_trainer_set_penalty().
 *
 * **Several tasks.** Each consolidation sets F ← γ·F + F_new and moves θ*
 * to the current values (online EWC, Schwarz et al. 2018): γ = 1 sums the
 * Fisher of every task so far, anchored at the latest parameters (the
 * Laplace approximation of Huszár 2018); γ < 1 lets old tasks fade; γ = 0
 * keeps only the last task. One penalty term, whatever the number of tasks,
 * and no memory per task.
 *
 * **Which parameters.** The parameters the model has when vikt_ewc_create()
 * is called, in creation order; create them first (a layer creates its
 * parameters on the first forward pass). Parameters made later get no
 * penalty. A parameter that is frozen (vikt_param_freeze()) during
 * accumulation adds nothing to its Fisher, so, unless an earlier task gave
 * it one, the penalty leaves it free once unfrozen; a parameter frozen during
 * task B adds a constant to the penalty and receives no gradient.
 *
 * **Memory.** vikt_ewc_create() makes the one allocation (16 bytes per
 * scalar parameter: the double sum, F and θ*, from the model's allocator);
 * accumulating, consolidating and the penalty allocate nothing else (the
 * penalty's tensor and tape record are in the step arena, like any op's).
 * Choose λ so the penalty matters next to task B's loss: with F from a mean
 * log-likelihood, values from 1 to 10⁴ are common; compare both terms.
 * examples/ewc_digits.c learns digits 0–4, then 5–9, plainly and with EWC.
 */

/** @brief Elastic weight consolidation state of one model (@ref ewc_guide). */
typedef struct vikt_ewc vikt_ewc;

/**
 * @brief Create the EWC state for the parameters @p m has now.
 *
 * F starts at zero and there is no anchor until vikt_ewc_consolidate().
 * The state belongs to the model: destroy it before the model.
 * @param[in]  m   The model; it must have at least one parameter.
 * @param[out] out Receives the state; NULL on failure.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL, ::VIKT_ERR_STATE (no parameters yet) or
 *         ::VIKT_ERR_NOMEM (recorded on the model).
 */
VIKT_API int vikt_ewc_create(vikt_model *m, vikt_ewc **out);

/**
 * @brief Destroy the EWC state.
 * @param[in] ewc The state, or NULL (nothing happens).
 */
VIKT_API void vikt_ewc_destroy(vikt_ewc *ewc);

/**
 * @brief Add the square of every tracked parameter's current gradient to the
 *        Fisher sum and count one call (see @ref ewc_guide for per-sample
 *        versus per-batch calls).
 *
 * Frozen parameters and parameters without a gradient add nothing. The
 * gradients are only read: clear them (vikt_zero_grad()) before the next
 * backward pass, or they accumulate. Nothing is allocated.
 * @param[in,out] ewc The state.
 * @return ::VIKT_OK; ::VIKT_ERR_NULL; ::VIKT_ERR_STATE (the model holds an
 *         error, so the gradients may be incomplete); ::VIKT_ERR_ARG (a
 *         gradient is NaN or infinite, recorded naming the parameter;
 *         nothing is added).
 */
VIKT_API int vikt_ewc_accumulate(vikt_ewc *ewc);

/**
 * @brief Accumulate the Fisher over a dataset: for each batch in the
 *        dataset's order, the loss of @p forward's output, its backward pass
 *        and vikt_ewc_accumulate().
 *
 * With @p batch_size 1 this is the empirical Fisher of Kirkpatrick et al.
 * (per-sample squared gradients of −log p(y|x) for cross-entropy); larger
 * batches are faster and give the mean of squared mean-gradients (see
 * @ref ewc_guide). The loss is the one a ::vikt_trainer uses for @p loss,
 * a mean over the batch. Runs in evaluation mode (vikt_set_training() 0,
 * so dropout is off) with gradients enabled, and puts both modes back.
 * Every parameter's gradient is overwritten and left at zero; each batch
 * begins a step (vikt_step_begin()), so step tensors made before the call
 * are gone after it. On error the batches before the failing one stay
 * accumulated.
 * @param[in,out] ewc        The state.
 * @param[in]     ds         A dataset of the same model: labels for
 *                           cross-entropy, float targets otherwise.
 * @param[in]     forward    The model definition (as for a trainer).
 * @param[in]     ud         Passed to @p forward.
 * @param[in]     loss       A ::vikt_loss_kind.
 * @param[in]     batch_size Samples per backward pass, >= 1; 1 for the
 *                           empirical Fisher.
 * @return The number of vikt_ewc_accumulate() calls made (>= 1), or
 *         ::VIKT_ERR_NULL, ::VIKT_ERR_ARG (a dataset of another model, the
 *         wrong kind of targets, a bad loss kind or batch size),
 *         ::VIKT_ERR_STATE (the model already holds an error) or the error of
 *         a failed step (held by the model with its message).
 */
VIKT_API int64_t vikt_ewc_accumulate_dataset(vikt_ewc *ewc, vikt_dataset *ds,
                                             vikt_forward_fn forward, void *ud,
                                             vikt_loss_kind loss, int64_t batch_size);

/**
 * @brief End a task: F ← @p gamma · F + (Fisher sum / calls), θ* ← the
 *        parameters' current values, and the sum and count start again.
 * @param[in,out] ewc   The state; at least one vikt_ewc_accumulate() since
 *                      the last consolidation.
 * @param[in]     gamma Weight of the earlier tasks' Fisher, 0 to 1 (1 sums
 *                      them; ignored at the first consolidation).
 * @return ::VIKT_OK, ::VIKT_ERR_NULL, ::VIKT_ERR_ARG (@p gamma outside
 *         [0, 1]) or ::VIKT_ERR_STATE (nothing accumulated); on error nothing
 *         changes. Nothing is allocated.
 */
VIKT_API int vikt_ewc_consolidate(vikt_ewc *ewc, float gamma);

/**
 * @brief The EWC penalty λ/2 · Σᵢ Fᵢ (θᵢ − θ*ᵢ)² over the tracked
 *        parameters, as a scalar step tensor recorded on the tape.
 *
 * Add it to the loss of the new task before vikt_backward(); its gradient
 * with respect to each parameter that requires one is λ·F·(θ − θ*). The sum
 * is taken in double. The state must outlive the step (it is read again by
 * the backward pass).
 * @param[in] ewc    The state, consolidated at least once.
 * @param[in] lambda The strength λ, finite and >= 0.
 * @return A step tensor of rank 0, or NULL with the error recorded on the
 *         model (::VIKT_ERR_ARG for λ, ::VIKT_ERR_STATE before the first
 *         consolidation); NULL for a NULL @p ewc.
 */
VIKT_API vikt_tensor *vikt_ewc_penalty(vikt_ewc *ewc, float lambda);

/**
 * @brief Borrow the consolidated Fisher diagonal F of one parameter.
 * @param[in] ewc   The state.
 * @param[in] param A parameter tracked by @p ewc.
 * @return vikt_tensor_numel() values (zeros before the first
 *         consolidation), valid until vikt_ewc_destroy(); NULL for NULL
 *         arguments or a tensor that is not tracked.
 */
VIKT_API const float *vikt_ewc_fisher(const vikt_ewc *ewc, const vikt_tensor *param);

/**
 * @brief Borrow the anchor θ* of one parameter (its values at the last
 *        consolidation).
 * @param[in] ewc   The state.
 * @param[in] param A parameter tracked by @p ewc.
 * @return vikt_tensor_numel() values (zeros before the first
 *         consolidation), valid until vikt_ewc_destroy(); NULL for NULL
 *         arguments or a tensor that is not tracked.
 */
VIKT_API const float *vikt_ewc_anchor(const vikt_ewc *ewc, const vikt_tensor *param);

/**
 * @brief The number of vikt_ewc_accumulate() calls since the last
 *        consolidation.
 * @param[in] ewc The state.
 * @return The count, or ::VIKT_ERR_NULL.
 */
VIKT_API int64_t vikt_ewc_pending(const vikt_ewc *ewc);

/* ------------------------------------------------------- federated averaging */

/**
 * @brief Federated averaging (FedAvg): set @p dst to the weighted mean of @p k
 *        parameter sets of its architecture.
 *
 * dst = Σᵢ wᵢ·θᵢ / Σᵢ wᵢ, element by element, over every parameter and every
 * buffer of @p dst, matched by name: batch-norm running statistics are
 * averaged like weights, and so are frozen parameters (an element equal in
 * every client comes out unchanged). Gradients, optimizer state and the
 * random generator are not touched.
 *
 * Every client must have exactly the parameters and buffers of @p dst (no
 * more, no fewer, same shapes) and only finite values; all of it is checked
 * before anything is written, and on any error @p dst is unchanged. @p dst
 * may be one of the clients.
 *
 * The result does not depend on the order of the clients, bit for bit:
 * each element's sum Σᵢ wᵢ·θᵢ and the total weight Σᵢ wᵢ are computed
 * exactly and rounded once to double, and their quotient is rounded to
 * float. It is thus within a hair (2^-51 relative) of the exact weighted
 * mean before that last rounding, cancellation included. Only the ratios of
 * the weights matter; they are scaled, so huge or tiny weights neither
 * overflow nor change the result (short of ratios beyond about 2^750).
 * Cost per element: 2K error-free additions into a short list of partials.
 * @param[in,out] dst     The model that receives the average; its parameter
 *                        and buffer names and shapes are the architecture.
 * @param[in]     clients @p k models (borrowed, only read; may include
 *                        @p dst).
 * @param[in]     weights @p k weights, usually the clients' sample counts;
 *                        each finite and > 0 (only ratios matter).
 * @param[in]     k       Number of clients, at least 1.
 * @return ::VIKT_OK; ::VIKT_ERR_NULL (@p dst, @p clients, @p weights or a
 *         client is NULL); ::VIKT_ERR_ARG (@p k < 1, a weight that is not
 *         finite and > 0, a NaN or infinity in a client);
 *         ::VIKT_ERR_NOT_FOUND (a client lacks a name of @p dst or has one
 *         @p dst lacks); ::VIKT_ERR_SHAPE; ::VIKT_ERR_NOMEM. The message,
 *         recorded on @p dst, names the client's index and the tensor.
 */
VIKT_API int vikt_fedavg(vikt_model *dst, vikt_model *const *clients, const double *weights,
                         int64_t k);

/**
 * @brief vikt_fedavg() over safetensors files (say, written by vikt_save()
 *        on each client), read one tensor at a time.
 *
 * Names, shapes and dtypes (F32, F16, BF16 or F64, as vikt_load() reads) of
 * every file are matched against @p dst first, and kinds as vikt_load()
 * matches them (a file buffer for a parameter of @p dst is
 * ::VIKT_ERR_SHAPE); tensors of another kind (optimizer state in a
 * checkpoint, see @ref file_format) are ignored.
 * Then each tensor is read from every file (its CRC32C checked when the file
 * has one) and averaged into a scratch copy of the model, which replaces
 * @p dst's values only once every file has been read: on any error,
 * @p dst is unchanged. Memory: the headers of the @p k files, which are
 * open at once, one float copy of @p dst's tensors and @p k copies of its
 * largest tensor.
 * @param[in,out] dst     The model that receives the average; it defines the
 *                        architecture (create its parameters first, or
 *                        vikt_load() one of the files into an empty model).
 * @param[in]     paths   @p k file names.
 * @param[in]     weights @p k weights, each finite and > 0.
 * @param[in]     k       Number of files, at least 1.
 * @return As vikt_fedavg(), and ::VIKT_ERR_IO or ::VIKT_ERR_FORMAT (a file
 *         that cannot be read, is malformed, fails its CRC or holds a dtype
 *         a vikt tensor cannot take); the message names the client's index,
 *         the file and the tensor.
 */
VIKT_API int vikt_fedavg_files(vikt_model *dst, const char *const *paths,
                               const double *weights, int64_t k);
/**
 * @brief Save a checkpoint: parameters, buffers, the model's random generator
 *        and, when @p opt is not NULL, the optimizer's hyperparameters,
 *        counters and state, crash-safely.
 *
 * See @ref file_format_checkpoint for the format and the exact-resume
 * guarantee, and @ref file_format_crash for what a failed save leaves. Nothing
 * in the model or optimizer changes.
 * @param[in] m    The model.
 * @param[in] opt  An optimizer of @p m, or NULL to save no optimizer state.
 * @param[in] path The file to create or replace; its directory must exist.
 * @return ::VIKT_OK, ::VIKT_ERR_NULL, ::VIKT_ERR_ARG (@p opt belongs to another
 *         model, a name that is not UTF-8, or with an optimizer a model tensor
 *         whose name starts with "optimizer.", which state tensors use),
 *         ::VIKT_ERR_NOMEM or ::VIKT_ERR_IO; on failure the previous file is
 *         untouched and the model's error message names the file and the
 *         problem.
 */
VIKT_API int vikt_checkpoint_save(vikt_model *m, const vikt_optimizer *opt, const char *path);

/**
 * @brief Load a checkpoint: parameters and buffers by name (strictly), the
 *        random generator and, when @p opt is not NULL, the optimizer's state.
 *
 * Into a model without parameters or buffers, the file's tensors are created
 * first, as vikt_load() does; layers called afterwards find them. With
 * @p opt, its state is replaced by the file's: the per-parameter state
 * (buffers are allocated as needed; parameters the file has no state for
 * start fresh), the step count and schedule position, the skipped-step count
 * and every hyperparameter the rule uses (as torch's
 * `Optimizer.load_state_dict` restores its settings): call
 * vikt_optimizer_set() afterwards to change one. With @p opt NULL the
 * optimizer state in the file is not read.
 *
 * Everything is validated (see @ref file_format_checkpoint) and allocated
 * before anything changes; on any failure the model, its random generator
 * and the optimizer are left as they were, except that a read error while
 * the values are copied (after every CRC was verified), or the file changing
 * during the call, can leave parameters partly loaded; the optimizer and the
 * generator are then unchanged. The load report (vikt_load_report()) and its
 * counts describe the call like those of vikt_load().
 * @param[in]     m    The model.
 * @param[in,out] opt  An optimizer of @p m of the rule the checkpoint was saved
 *                     with, or NULL.
 * @param[in]     path The checkpoint file.
 * @return ::VIKT_OK; ::VIKT_ERR_NULL; ::VIKT_ERR_ARG (@p opt belongs to another
 *         model, is of another rule than the file's, or the file holds no
 *         optimizer state); ::VIKT_ERR_FORMAT (not a checkpoint, another
 *         format version, a malformed or corrupt file, invalid or missing
 *         optimizer state); ::VIKT_ERR_NOT_FOUND or ::VIKT_ERR_SHAPE (the
 *         model's tensors differ from the file's, as in a strict vikt_load());
 *         ::VIKT_ERR_IO; ::VIKT_ERR_NOMEM. The message names the file and the
 *         problem.
 */
VIKT_API int vikt_checkpoint_load(vikt_model *m, vikt_optimizer *opt, const char *path);

#ifdef __cplusplus
}
#endif

#endif /* VIKT_H */
