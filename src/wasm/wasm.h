/* wasm.h - what the wasm platform layer (src/wasm) offers the other code
 * linked into engine.wasm, i.e. the WebGPU backend in src/gpu: the export
 * attribute, the module's one error slot (read by JS through the export
 * error_message), and the model handle that JS passes to every engine call.
 * The JS-facing contract (which exports, in what order) is in README.md. */
#ifndef SL_WASM_H
#define SL_WASM_H

#include "model/model.h"

/* Marks a function as a module export named `name`. Outside wasm (native
 * builds of these files for testing) it is a plain function. */
#if defined(__wasm__)
#define SL_EXPORT(name) __attribute__((export_name(name)))
#else
#define SL_EXPORT(name)
#endif

/* The model being loaded or loaded: created by the export model_new. */
typedef struct sl_wasm_model sl_wasm_model;

/* The error that the export error_message returns. Exports that fail write
 * their message here (return sl_err(sl_wasm_err(), "...")) and return 0 or
 * -1; JS then reads error_message(). */
sl_error *sl_wasm_err(void);

/* The loaded model (after the export model_load succeeded), else NULL. */
const sl_model *sl_wasm_model_get(const sl_wasm_model *m);

/* The tensor table: after all GGUF headers were given, before and after
 * model_load. Tensor data pointers are NULL until the CPU weights are loaded.
 * NULL before the headers are complete. */
const sl_gguf *sl_wasm_model_gguf(const sl_wasm_model *m);

#endif
