/* test_wasm_chat.c - the wasm export chat_render (src/wasm/chat_render.c)
 * compiled natively, also under ASan/UBSan: a packed conversation renders
 * exactly as sl_chat_apply renders the same messages, by a named template or
 * the model's own; every truncation of the packed buffer, bad counts,
 * unknown templates and a model without a template are errors with a
 * message, never a crash. Like test_wasm_exports.c it #includes the .c
 * files, which belong to the wasm build only. */
#include "test.h"

#include "../src/wasm/exports.c"
#include "../src/wasm/chat_render.c"
#include "model/synth.h"

static sl_wasm_model *model;

/* A synthesized tiny model, loaded through the exports. */
static int load_model(void) {
    sl_synth_params p = {.shape = sl_synth_find_shape("tiny"), .preset = sl_synth_find_preset("Q8_0"), .seed = 3};
    sl_error err;
    void *buf = NULL;
    size_t size = 0;
    if (!p.shape || !p.preset || sl_synth_write_memory(&p, &buf, &size, &err)) return -1;
    model = wasm_model_new();
    int rc = -1;
    if (model && wasm_model_header(model, buf, size, (double)size) == 0 && wasm_cpu_weights_alloc(model) == 0) {
        memcpy(wasm_cpu_file_dest(model, 0), buf, size);
        rc = wasm_model_load(model, "test");
    }
    free(buf);
    return rc;
}

/* Packs messages as JS does: role\0content\0 ... Returns the length. */
static size_t pack(const sl_chat_msg *msgs, int n, char *out, size_t cap) {
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        const char *parts[2] = {msgs[i].role, msgs[i].content};
        for (int k = 0; k < 2; k++) {
            size_t len = strlen(parts[k]) + 1;
            if (at + len > cap) return 0;
            memcpy(out + at, parts[k], len);
            at += len;
        }
    }
    return at;
}

static const sl_chat_msg CONVERSATION[] = {
    {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "2+2? \xc3\xa9"},
};
#define N_CONV ((int)(sizeof CONVERSATION / sizeof CONVERSATION[0]))

static void test_named_templates(void) {
    char buf[512];
    size_t len = pack(CONVERSATION, N_CONV, buf, sizeof buf);
    CHECK(len > 0);
    const char *names[] = {"chatml", "llama3", "llama2", "mistral-v7", "gemma", "phi3"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        for (int add = 0; add < 2; add++) {
            char *got = wasm_chat_render(model, names[i], buf, len, N_CONV, add);
            char *want = NULL;
            sl_error err;
            int rc = sl_chat_apply(sl_chat_from_name(names[i]), CONVERSATION, N_CONV, add != 0, &want, &err);
            CHECKF(rc == 0 && got && want && !strcmp(got, want), "%s add=%d: got '%s' want '%s' (%s)", names[i], add,
                   got ? got : "(null)", want ? want : "(null)", got ? "" : last_error.msg);
            free(got);
            free(want);
        }
    }
}

static void test_model_template(void) {
    char buf[512];
    size_t len = pack(CONVERSATION, 2, buf, sizeof buf);
    sl_model *md = model->model;
    char *saved = md->chat_template;
    /* no template in the model: an error that says so */
    md->chat_template = NULL;
    CHECK(wasm_chat_render(model, NULL, buf, len, 2, 1) == NULL);
    CHECKF(strstr(last_error.msg, "no chat template") != NULL, "%s", last_error.msg);
    /* a Jinja text with ChatML's markers: rendered as ChatML */
    char jinja[] = "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>'}}{% endfor %}";
    md->chat_template = jinja;
    char *got = wasm_chat_render(model, NULL, buf, len, 2, 1);
    CHECKF(got && !strcmp(got, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"),
           "got %s", got ? got : last_error.msg);
    free(got);
    /* a text we cannot place */
    char odd[] = "{{ something unknown }}";
    md->chat_template = odd;
    CHECK(wasm_chat_render(model, NULL, buf, len, 2, 1) == NULL);
    CHECKF(strstr(last_error.msg, "not one we know") != NULL, "%s", last_error.msg);
    md->chat_template = saved;
}

static void test_bad_input(void) {
    char buf[512];
    size_t len = pack(CONVERSATION, N_CONV, buf, sizeof buf);
    /* every truncation that cuts the last NUL off */
    for (size_t cut = 0; cut < len; cut++) {
        last_error.msg[0] = 0;
        char *got = wasm_chat_render(model, "chatml", buf, cut, N_CONV, 1);
        CHECKF(got == NULL && last_error.msg[0], "cut at %zu", cut);
        free(got);
    }
    /* more messages than the buffer holds; counts out of range */
    CHECK(wasm_chat_render(model, "chatml", buf, len, N_CONV + 1, 1) == NULL);
    CHECK(wasm_chat_render(model, "chatml", buf, len, 0, 1) == NULL);
    CHECK(wasm_chat_render(model, "chatml", buf, len, -5, 1) == NULL);
    CHECK(wasm_chat_render(model, "chatml", buf, len, 1 << 30, 1) == NULL);
    CHECK(wasm_chat_render(model, "chatml", NULL, 0, 1, 1) == NULL);
    CHECK(wasm_chat_render(model, "chatml", NULL, 5, 1, 1) == NULL);
    /* no model, unknown template, a role the family has no place for */
    CHECK(wasm_chat_render(NULL, "chatml", buf, len, N_CONV, 1) == NULL);
    CHECK(wasm_chat_render(model, "no-such-template", buf, len, N_CONV, 1) == NULL);
    CHECKF(strstr(last_error.msg, "no-such-template") != NULL, "%s", last_error.msg);
    sl_chat_msg tool[] = {{"tool", "x"}};
    len = pack(tool, 1, buf, sizeof buf);
    CHECK(wasm_chat_render(model, "gemma", buf, len, 1, 1) == NULL);
    /* an empty role is refused; fewer messages than packed are fine */
    sl_chat_msg empty[] = {{"", "x"}};
    len = pack(empty, 1, buf, sizeof buf);
    CHECK(wasm_chat_render(model, "chatml", buf, len, 1, 1) == NULL);
    len = pack(CONVERSATION, N_CONV, buf, sizeof buf);
    char *one = wasm_chat_render(model, "chatml", buf, len, 1, 0);
    CHECKF(one && !strcmp(one, "<|im_start|>system\nBe brief.<|im_end|>\n"), "%s", one ? one : last_error.msg);
    free(one);
}

int main(void) {
    if (load_model()) {
        fprintf(stderr, "cannot load the test model: %s\n", last_error.msg);
        printf("0 passed, 1 failed\n");
        return 1;
    }
    RUN(test_named_templates);
    RUN(test_model_template);
    RUN(test_bad_input);
    wasm_model_free(model);
    TEST_SUMMARY();
}
