/* chat.c - chat template detection and rendering (see chat.h).
 *
 * Detection looks for the same distinctive markers, in the same order, as
 * llama.cpp's llm_chat_detect_template, so a GGUF gets the same family here
 * as there. Rendering writes the text llama.cpp's llm_chat_apply_template
 * writes for that family; roles llama.cpp would silently skip or fold into
 * another are refused here instead. */
#include "tokenizer/chat.h"

#include <stdlib.h>
#include <string.h>

/* ---- names ---------------------------------------------------------------- */

static const char *const family_names[SL_CHAT_COUNT] = {
    [SL_CHAT_UNKNOWN] = "unknown",
    [SL_CHAT_CHATML] = "chatml",
    [SL_CHAT_LLAMA2] = "llama2",
    [SL_CHAT_LLAMA2_SYS] = "llama2-sys",
    [SL_CHAT_LLAMA2_SYS_BOS] = "llama2-sys-bos",
    [SL_CHAT_LLAMA2_SYS_STRIP] = "llama2-sys-strip",
    [SL_CHAT_LLAMA3] = "llama3",
    [SL_CHAT_MISTRAL_V1] = "mistral-v1",
    [SL_CHAT_MISTRAL_V3] = "mistral-v3",
    [SL_CHAT_MISTRAL_V3_TEKKEN] = "mistral-v3-tekken",
    [SL_CHAT_MISTRAL_V7] = "mistral-v7",
    [SL_CHAT_MISTRAL_V7_TEKKEN] = "mistral-v7-tekken",
    [SL_CHAT_PHI3] = "phi3",
    [SL_CHAT_PHI4] = "phi4",
    [SL_CHAT_FALCON3] = "falcon3",
    [SL_CHAT_ZEPHYR] = "zephyr",
    [SL_CHAT_MONARCH] = "monarch",
    [SL_CHAT_GEMMA] = "gemma",
    [SL_CHAT_ORION] = "orion",
    [SL_CHAT_OPENCHAT] = "openchat",
    [SL_CHAT_VICUNA] = "vicuna",
    [SL_CHAT_VICUNA_ORCA] = "vicuna-orca",
    [SL_CHAT_DEEPSEEK] = "deepseek",
    [SL_CHAT_DEEPSEEK2] = "deepseek2",
    [SL_CHAT_DEEPSEEK3] = "deepseek3",
    [SL_CHAT_DEEPSEEK_OCR] = "deepseek-ocr",
    [SL_CHAT_COMMAND_R] = "command-r",
    [SL_CHAT_CHATGLM3] = "chatglm3",
    [SL_CHAT_CHATGLM4] = "chatglm4",
    [SL_CHAT_GLMEDGE] = "glmedge",
    [SL_CHAT_MINICPM] = "minicpm",
    [SL_CHAT_EXAONE3] = "exaone3",
    [SL_CHAT_EXAONE4] = "exaone4",
    [SL_CHAT_EXAONE_MOE] = "exaone-moe",
    [SL_CHAT_RWKV_WORLD] = "rwkv-world",
    [SL_CHAT_GRANITE] = "granite",
    [SL_CHAT_GRANITE_4_0] = "granite-4.0",
    [SL_CHAT_GRANITE_4_1] = "granite-4.1",
    [SL_CHAT_GIGACHAT] = "gigachat",
    [SL_CHAT_MEGREZ] = "megrez",
    [SL_CHAT_YANDEX] = "yandex",
    [SL_CHAT_BAILING] = "bailing",
    [SL_CHAT_BAILING_THINK] = "bailing-think",
    [SL_CHAT_BAILING2] = "bailing2",
    [SL_CHAT_LLAMA4] = "llama4",
    [SL_CHAT_SMOLVLM] = "smolvlm",
    [SL_CHAT_DOTS1] = "dots1",
    [SL_CHAT_HUNYUAN_MOE] = "hunyuan-moe",
    [SL_CHAT_OPENAI_MOE] = "gpt-oss",
    [SL_CHAT_HUNYUAN_DENSE] = "hunyuan-dense",
    [SL_CHAT_HUNYUAN_VL] = "hunyuan-vl",
    [SL_CHAT_KIMI_K2] = "kimi-k2",
    [SL_CHAT_SEED_OSS] = "seed_oss",
    [SL_CHAT_GROK2] = "grok-2",
    [SL_CHAT_PANGU_EMBED] = "pangu-embedded",
    [SL_CHAT_SOLAR_OPEN] = "solar-open",
};

const char *sl_chat_name(sl_chat_template t) {
    if ((int)t <= SL_CHAT_UNKNOWN || (int)t >= SL_CHAT_COUNT || !family_names[t])
        return family_names[SL_CHAT_UNKNOWN];
    return family_names[t];
}

sl_chat_template sl_chat_from_name(const char *name) {
    if (!name) return SL_CHAT_UNKNOWN;
    for (int t = SL_CHAT_UNKNOWN + 1; t < SL_CHAT_COUNT; t++)
        if (family_names[t] && strcmp(name, family_names[t]) == 0) return (sl_chat_template)t;
    return SL_CHAT_UNKNOWN;
}

/* ---- detection -------------------------------------------------------------- */

static bool has(const char *text, const char *marker) { return strstr(text, marker) != NULL; }

sl_chat_template sl_chat_detect(const char *t) {
    if (!t) return SL_CHAT_UNKNOWN;
    sl_chat_template by_name = sl_chat_from_name(t);
    if (by_name != SL_CHAT_UNKNOWN) return by_name;

    /* The order matters: later families' markers also occur in earlier ones. */
    if (has(t, "<|im_start|>")) {
        if (has(t, "<|im_sep|>")) return SL_CHAT_PHI4;
        /* SmolVLM uses <|im_start|> as BOS but is not ChatML. */
        if (has(t, "<end_of_utterance>")) return SL_CHAT_SMOLVLM;
        return SL_CHAT_CHATML;
    }
    if (strncmp(t, "mistral", 7) == 0 || has(t, "[INST]")) {
        if (has(t, "[SYSTEM_PROMPT]")) return SL_CHAT_MISTRAL_V7;
        /* Mistral's official v1, v3 and v3-tekken templates. */
        if (has(t, "' [INST] ' + system_message") || has(t, "[AVAILABLE_TOOLS]")) {
            if (has(t, " [INST]")) return SL_CHAT_MISTRAL_V1;
            if (has(t, "\"[INST]\"")) return SL_CHAT_MISTRAL_V3_TEKKEN;
            return SL_CHAT_MISTRAL_V3;
        }
        /* Llama 2 and its variants. */
        if (has(t, "content.strip()")) return SL_CHAT_LLAMA2_SYS_STRIP;
        if (has(t, "bos_token + '[INST]")) return SL_CHAT_LLAMA2_SYS_BOS;
        if (has(t, "<<SYS>>")) return SL_CHAT_LLAMA2_SYS;
        return SL_CHAT_LLAMA2;
    }
    if (has(t, "<|assistant|>") && has(t, "<|end|>")) return SL_CHAT_PHI3;
    if (has(t, "[gMASK]<sop>")) return SL_CHAT_CHATGLM4;
    if (has(t, "<|assistant|>") && has(t, "<|user|>")) {
        if (has(t, "<|tool_declare|>")) return SL_CHAT_EXAONE_MOE;
        return has(t, "</s>") ? SL_CHAT_FALCON3 : SL_CHAT_GLMEDGE;
    }
    if (has(t, "<|{{ item['role'] }}|>") && has(t, "<|begin_of_image|>")) return SL_CHAT_GLMEDGE;
    if (has(t, "<|user|>") && has(t, "<|endoftext|>")) return SL_CHAT_ZEPHYR;
    if (has(t, "bos_token + message['role']")) return SL_CHAT_MONARCH;
    if (has(t, "<start_of_turn>")) return SL_CHAT_GEMMA;
    if (has(t, "'\\n\\nAssistant: ' + eos_token")) return SL_CHAT_ORION;
    if (has(t, "GPT4 Correct ")) return SL_CHAT_OPENCHAT;
    if (has(t, "USER: ") && has(t, "ASSISTANT: "))
        return has(t, "SYSTEM: ") ? SL_CHAT_VICUNA_ORCA : SL_CHAT_VICUNA;
    if (has(t, "### Instruction:") && has(t, "<|EOT|>")) return SL_CHAT_DEEPSEEK;
    if (has(t, "<|START_OF_TURN_TOKEN|>") && has(t, "<|USER_TOKEN|>")) return SL_CHAT_COMMAND_R;
    if (has(t, "<|start_header_id|>") && has(t, "<|end_header_id|>")) return SL_CHAT_LLAMA3;
    if (has(t, "[gMASK]sop")) return SL_CHAT_CHATGLM3;
    if (has(t, "<用户>")) return SL_CHAT_MINICPM;
    if (has(t, "'Assistant: ' + message['content'] + eos_token")) return SL_CHAT_DEEPSEEK2;
    if (has(t, "<｜Assistant｜>") && has(t, "<｜User｜>") && has(t, "<｜end▁of▁sentence｜>"))
        return SL_CHAT_DEEPSEEK3;
    if (has(t, "[|system|]") && has(t, "[|assistant|]") && has(t, "[|endofturn|]"))
        return has(t, "[|tool|]") ? SL_CHAT_EXAONE4 : SL_CHAT_EXAONE3;
    if (has(t, "rwkv-world") || has(t, "{{- 'User: ' + message['content']|trim + '\\n\\n' -}}"))
        return SL_CHAT_RWKV_WORLD;
    if (has(t, "<|start_of_role|>")) {
        if (has(t, "<tool_call>") || has(t, "<tools>"))
            return has(t, "g4_default_system_message") ? SL_CHAT_GRANITE_4_0 : SL_CHAT_GRANITE_4_1;
        return SL_CHAT_GRANITE;
    }
    if (has(t, "message['role'] + additional_special_tokens[0] + message['content'] + "
               "additional_special_tokens[1]"))
        return SL_CHAT_GIGACHAT;
    if (has(t, "<|role_start|>")) return SL_CHAT_MEGREZ;
    if (has(t, " Ассистент:")) return SL_CHAT_YANDEX;
    if (has(t, "<role>ASSISTANT</role>") && has(t, "'HUMAN'")) return SL_CHAT_BAILING;
    if (has(t, "<role>ASSISTANT</role>") && has(t, "\"HUMAN\"") && has(t, "<think>"))
        return SL_CHAT_BAILING_THINK;
    if (has(t, "<role>ASSISTANT</role>") && has(t, "<role>HUMAN</role>") && has(t, "<|role_end|>"))
        return SL_CHAT_BAILING2;
    if (has(t, "<|header_start|>") && has(t, "<|header_end|>")) return SL_CHAT_LLAMA4;
    if (has(t, "<|endofuserprompt|>")) return SL_CHAT_DOTS1;
    if (has(t, "<|extra_0|>") && has(t, "<|extra_4|>")) return SL_CHAT_HUNYUAN_MOE;
    if (has(t, "<|start|>") && has(t, "<|channel|>")) return SL_CHAT_OPENAI_MOE;
    if (has(t, "<｜hy_Assistant｜>") && has(t, "<｜hy_begin▁of▁sentence｜>")) return SL_CHAT_HUNYUAN_VL;
    if (has(t, "<｜hy_Assistant｜>") && has(t, "<｜hy_place▁holder▁no▁3｜>"))
        return SL_CHAT_HUNYUAN_DENSE;
    if (has(t, "<|im_assistant|>assistant<|im_middle|>")) return SL_CHAT_KIMI_K2;
    if (has(t, "<seed:bos>")) return SL_CHAT_SEED_OSS;
    if (has(t, "'Assistant: '  + message['content'] + '<|separator|>")) return SL_CHAT_GROK2;
    if (has(t, "[unused9]系统：[unused10]")) return SL_CHAT_PANGU_EMBED;
    if (has(t, "<|begin|>") && has(t, "<|end|>") && has(t, "<|content|>")) return SL_CHAT_SOLAR_OPEN;
    return SL_CHAT_UNKNOWN;
}

/* ---- roles -------------------------------------------------------------------- */

enum {
    ROLE_SYSTEM = 1 << 0,
    ROLE_USER = 1 << 1,
    ROLE_ASSISTANT = 1 << 2,
    ROLE_TOOL = 1 << 3,
    ROLE_FUNCTION = 1 << 4,
    ROLE_OTHER = 1 << 5,
};
#define ROLES_BASIC (ROLE_SYSTEM | ROLE_USER | ROLE_ASSISTANT)
#define ROLES_ANY (ROLES_BASIC | ROLE_TOOL | ROLE_FUNCTION | ROLE_OTHER)

static int role_kind(const char *role) {
    if (strcmp(role, "system") == 0) return ROLE_SYSTEM;
    if (strcmp(role, "user") == 0) return ROLE_USER;
    if (strcmp(role, "assistant") == 0) return ROLE_ASSISTANT;
    if (strcmp(role, "tool") == 0) return ROLE_TOOL;
    if (strcmp(role, "function") == 0) return ROLE_FUNCTION;
    return ROLE_OTHER;
}

/* The roles a family renders. Families that write the role's name into the
 * text take any role; the others only those they have a place for. */
static int family_roles(sl_chat_template t) {
    switch (t) {
    case SL_CHAT_CHATML: case SL_CHAT_LLAMA3: case SL_CHAT_PHI3: case SL_CHAT_PHI4:
    case SL_CHAT_FALCON3: case SL_CHAT_ZEPHYR: case SL_CHAT_MONARCH: case SL_CHAT_OPENCHAT:
    case SL_CHAT_DEEPSEEK_OCR: case SL_CHAT_CHATGLM3: case SL_CHAT_CHATGLM4:
    case SL_CHAT_GLMEDGE: case SL_CHAT_GRANITE: case SL_CHAT_GRANITE_4_0:
    case SL_CHAT_GRANITE_4_1: case SL_CHAT_MEGREZ: case SL_CHAT_BAILING:
    case SL_CHAT_BAILING_THINK: case SL_CHAT_BAILING2: case SL_CHAT_LLAMA4:
    case SL_CHAT_OPENAI_MOE: case SL_CHAT_SEED_OSS: case SL_CHAT_SOLAR_OPEN:
        return ROLES_ANY;
    case SL_CHAT_EXAONE4: case SL_CHAT_EXAONE_MOE: case SL_CHAT_KIMI_K2:
        return ROLES_BASIC | ROLE_TOOL;
    case SL_CHAT_PANGU_EMBED:
        return ROLES_BASIC | ROLE_TOOL | ROLE_FUNCTION;
    default:
        return ROLES_BASIC;
    }
}

/* ---- output buffer --------------------------------------------------------- */

typedef struct text_buf {
    char *data;
    size_t len, cap;
    bool out_of_memory;
} text_buf;

static void put_n(text_buf *b, const char *s, size_t n) {
    if (b->out_of_memory || n == 0) return;
    if (n > SIZE_MAX - b->len - 1) {
        b->out_of_memory = true;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
        char *p = realloc(b->data, cap);
        if (!p) {
            b->out_of_memory = true;
            return;
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

static void put(text_buf *b, const char *s) { put_n(b, s, strlen(s)); }

/* Whitespace as C's isspace in the "C" locale (what llama.cpp's trim uses). */
static bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* Writes s without leading and trailing whitespace. */
static void put_trimmed(text_buf *b, const char *s) {
    size_t start = 0, end = strlen(s);
    while (start < end && is_space(s[start])) start++;
    while (end > start && is_space(s[end - 1])) end--;
    put_n(b, s + start, end - start);
}

static void put_maybe_trimmed(text_buf *b, const char *s, bool trim) {
    if (trim)
        put_trimmed(b, s);
    else
        put(b, s);
}

static char ascii_upper(char c) { return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c; }

/* ---- rendering, one function per group of families ------------------------- */

static void render_llama2(sl_chat_template t, const sl_chat_msg *m, size_t n, text_buf *b) {
    bool system_tags = t != SL_CHAT_LLAMA2;
    bool bos_inside = t == SL_CHAT_LLAMA2_SYS_BOS;
    bool strip = t == SL_CHAT_LLAMA2_SYS_STRIP;
    /* The first BOS is the tokenizer's; later turns get "<s>" in the text
     * only in the SYS_BOS variant. */
    bool inside_turn = true;
    put(b, "[INST] ");
    for (size_t i = 0; i < n; i++) {
        int role = role_kind(m[i].role);
        if (!inside_turn) {
            inside_turn = true;
            put(b, bos_inside ? "<s>[INST] " : "[INST] ");
        }
        if (role == ROLE_SYSTEM) {
            if (system_tags) put(b, "<<SYS>>\n");
            put_maybe_trimmed(b, m[i].content, strip);
            put(b, system_tags ? "\n<</SYS>>\n\n" : "\n");
        } else if (role == ROLE_USER) {
            put_maybe_trimmed(b, m[i].content, strip);
            put(b, " [/INST]");
        } else {
            put_maybe_trimmed(b, m[i].content, strip);
            put(b, "</s>");
            inside_turn = false;
        }
    }
}

static void render_mistral(sl_chat_template t, const sl_chat_msg *m, size_t n, text_buf *b) {
    if (t == SL_CHAT_MISTRAL_V7 || t == SL_CHAT_MISTRAL_V7_TEKKEN) {
        const char *sp = t == SL_CHAT_MISTRAL_V7 ? " " : "";
        for (size_t i = 0; i < n; i++) {
            int role = role_kind(m[i].role);
            if (role == ROLE_SYSTEM) {
                put(b, "[SYSTEM_PROMPT]"), put(b, sp), put(b, m[i].content), put(b, "[/SYSTEM_PROMPT]");
            } else if (role == ROLE_USER) {
                put(b, "[INST]"), put(b, sp), put(b, m[i].content), put(b, "[/INST]");
            } else {
                put(b, sp), put(b, m[i].content), put(b, "</s>");
            }
        }
        return;
    }
    const char *lead = t == SL_CHAT_MISTRAL_V1 ? " " : "";
    const char *trail = t == SL_CHAT_MISTRAL_V3_TEKKEN ? "" : " ";
    bool trim_assistant = t == SL_CHAT_MISTRAL_V3;
    bool inside_turn = false;
    for (size_t i = 0; i < n; i++) {
        int role = role_kind(m[i].role);
        if (!inside_turn) {
            put(b, lead), put(b, "[INST]"), put(b, trail);
            inside_turn = true;
        }
        if (role == ROLE_SYSTEM) {
            put(b, m[i].content), put(b, "\n\n");
        } else if (role == ROLE_USER) {
            put(b, m[i].content), put(b, lead), put(b, "[/INST]");
        } else {
            put(b, trail);
            put_maybe_trimmed(b, m[i].content, trim_assistant);
            put(b, "</s>");
            inside_turn = false;
        }
    }
}

static void render_gemma(const sl_chat_msg *m, size_t n, bool add_assistant, text_buf *b) {
    /* Gemma has no system turn: system texts (trimmed, concatenated) open
     * the next user turn. */
    text_buf system = {0};
    for (size_t i = 0; i < n; i++) {
        int role = role_kind(m[i].role);
        if (role == ROLE_SYSTEM) {
            put_trimmed(&system, m[i].content);
            continue;
        }
        bool model = role == ROLE_ASSISTANT;
        put(b, "<start_of_turn>"), put(b, model ? "model" : m[i].role), put(b, "\n");
        if (system.len > 0 && !model) {
            put_n(b, system.data, system.len), put(b, "\n\n");
            system.len = 0;
        }
        put_trimmed(b, m[i].content);
        put(b, "<end_of_turn>\n");
    }
    if (system.out_of_memory) b->out_of_memory = true;
    free(system.data);
    if (add_assistant) put(b, "<start_of_turn>model\n");
}

static void render_orion(const sl_chat_msg *m, size_t n, text_buf *b) {
    text_buf system = {0};
    for (size_t i = 0; i < n; i++) {
        int role = role_kind(m[i].role);
        if (role == ROLE_SYSTEM) {
            put(&system, m[i].content);
        } else if (role == ROLE_USER) {
            put(b, "Human: ");
            if (system.len > 0) {
                put_n(b, system.data, system.len), put(b, "\n\n");
                system.len = 0;
            }
            put(b, m[i].content), put(b, "\n\nAssistant: </s>");
        } else {
            put(b, m[i].content), put(b, "</s>");
        }
    }
    if (system.out_of_memory) b->out_of_memory = true;
    free(system.data);
}

/* Families where every message is prefix + role + middle + content + suffix
 * (the role's name written into the text) and the assistant's opening is a
 * fixed string. */
typedef struct role_in_text_family {
    sl_chat_template t;
    const char *prefix, *middle, *suffix, *assistant_opening;
    bool trim;
} role_in_text_family;

static const role_in_text_family role_in_text_families[] = {
    {SL_CHAT_CHATML, "<|im_start|>", "\n", "<|im_end|>\n", "<|im_start|>assistant\n", false},
    {SL_CHAT_LLAMA3, "<|start_header_id|>", "<|end_header_id|>\n\n", "<|eot_id|>",
     "<|start_header_id|>assistant<|end_header_id|>\n\n", true},
    {SL_CHAT_LLAMA4, "<|header_start|>", "<|header_end|>\n\n", "<|eot|>",
     "<|header_start|>assistant<|header_end|>\n\n", true},
    {SL_CHAT_PHI3, "<|", "|>\n", "<|end|>\n", "<|assistant|>\n", false},
    {SL_CHAT_PHI4, "<|im_start|>", "<|im_sep|>", "<|im_end|>", "<|im_start|>assistant<|im_sep|>", false},
    {SL_CHAT_FALCON3, "<|", "|>\n", "\n", "<|assistant|>\n", false},
    {SL_CHAT_ZEPHYR, "<|", "|>\n", "<|endoftext|>\n", "<|assistant|>\n", false},
    {SL_CHAT_GLMEDGE, "<|", "|>\n", "", "<|assistant|>", false},
    {SL_CHAT_MEGREZ, "<|role_start|>", "<|role_end|>", "<|turn_end|>",
     "<|role_start|>assistant<|role_end|>", false},
    {SL_CHAT_SOLAR_OPEN, "<|begin|>", "<|content|>", "<|end|>", "<|begin|>assistant", false},
};

/* Families with a fixed text per role: system, user and assistant messages
 * become open + content + close, contents optionally trimmed. */
typedef struct fixed_roles_family {
    sl_chat_template t;
    const char *begin; /* written once before the messages */
    const char *system_open, *system_close;
    const char *user_open, *user_close;
    const char *assistant_open, *assistant_close;
    const char *assistant_opening; /* written when add_assistant */
    bool trim;
} fixed_roles_family;

static const fixed_roles_family fixed_roles_families[] = {
    {SL_CHAT_VICUNA, "", "", "\n\n", "USER: ", "\n", "ASSISTANT: ", "</s>\n", "ASSISTANT:", false},
    {SL_CHAT_VICUNA_ORCA, "", "SYSTEM: ", "\n", "USER: ", "\n", "ASSISTANT: ", "</s>\n", "ASSISTANT:",
     false},
    {SL_CHAT_DEEPSEEK, "", "", "", "### Instruction:\n", "\n", "### Response:\n", "\n<|EOT|>\n",
     "### Response:\n", false},
    {SL_CHAT_DEEPSEEK2, "", "", "\n\n", "User: ", "\n\n", "Assistant: ", "<｜end▁of▁sentence｜>",
     "Assistant:", false},
    {SL_CHAT_DEEPSEEK3, "", "", "\n\n", "<｜User｜>", "", "<｜Assistant｜>", "<｜end▁of▁sentence｜>",
     "<｜Assistant｜>", false},
    {SL_CHAT_COMMAND_R, "", "<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>", "<|END_OF_TURN_TOKEN|>",
     "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>", "<|END_OF_TURN_TOKEN|>",
     "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>", "<|END_OF_TURN_TOKEN|>",
     "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>", true},
    {SL_CHAT_EXAONE3, "", "[|system|]", "[|endofturn|]\n", "[|user|]", "\n", "[|assistant|]",
     "[|endofturn|]\n", "[|assistant|]", true},
    {SL_CHAT_SMOLVLM, "<|im_start|>", "", "\n\n", "User: ", "<end_of_utterance>\n", "Assistant: ",
     "<end_of_utterance>\n", "Assistant:", false},
    {SL_CHAT_DOTS1, "", "<|system|>", "<|endofsystem|>", "<|userprompt|>", "<|endofuserprompt|>",
     "<|response|>", "<|endofresponse|>", "<|response|>", false},
    {SL_CHAT_HUNYUAN_MOE, "", "<|startoftext|>", "<|extra_4|>", "<|startoftext|>", "<|extra_0|>", "",
     "<|eos|>", "", false},
    {SL_CHAT_MINICPM, "", "", "", "<用户>", "<AI>", "", "", "", true},
};

static void render_role_in_text(const role_in_text_family *f, const sl_chat_msg *m, size_t n,
                                bool add_assistant, text_buf *b) {
    for (size_t i = 0; i < n; i++) {
        put(b, f->prefix), put(b, m[i].role), put(b, f->middle);
        put_maybe_trimmed(b, m[i].content, f->trim);
        put(b, f->suffix);
    }
    if (add_assistant) put(b, f->assistant_opening);
}

static void render_fixed_roles(const fixed_roles_family *f, const sl_chat_msg *m, size_t n,
                               bool add_assistant, text_buf *b) {
    put(b, f->begin);
    for (size_t i = 0; i < n; i++) {
        int role = role_kind(m[i].role);
        const char *open = role == ROLE_SYSTEM ? f->system_open
                           : role == ROLE_USER ? f->user_open
                                               : f->assistant_open;
        const char *close = role == ROLE_SYSTEM ? f->system_close
                            : role == ROLE_USER ? f->user_close
                                                : f->assistant_close;
        put(b, open);
        put_maybe_trimmed(b, m[i].content, f->trim);
        put(b, close);
    }
    if (add_assistant) put(b, f->assistant_opening);
}

/* The families that fit neither table. */
static void render_other(sl_chat_template t, const sl_chat_msg *m, size_t n, bool add_assistant,
                         text_buf *b) {
    switch (t) {
    case SL_CHAT_MONARCH:
        /* BOS inside the history, except before the first message. */
        for (size_t i = 0; i < n; i++) {
            if (i > 0) put(b, "<s>");
            put(b, m[i].role), put(b, "\n"), put(b, m[i].content), put(b, "</s>\n");
        }
        if (add_assistant) put(b, "<s>assistant\n");
        break;
    case SL_CHAT_OPENCHAT:
        for (size_t i = 0; i < n; i++) {
            if (role_kind(m[i].role) != ROLE_SYSTEM) {
                char first = ascii_upper(m[i].role[0]);
                put(b, "GPT4 Correct "), put_n(b, &first, 1), put(b, m[i].role + 1), put(b, ": ");
            }
            put(b, m[i].content), put(b, "<|end_of_turn|>");
        }
        if (add_assistant) put(b, "GPT4 Correct Assistant:");
        break;
    case SL_CHAT_DEEPSEEK_OCR:
        for (size_t i = 0; i < n; i++) put(b, m[i].content);
        break;
    case SL_CHAT_CHATGLM3:
    case SL_CHAT_CHATGLM4:
        put(b, t == SL_CHAT_CHATGLM3 ? "[gMASK]sop" : "[gMASK]<sop>");
        for (size_t i = 0; i < n; i++) {
            put(b, "<|"), put(b, m[i].role), put(b, t == SL_CHAT_CHATGLM3 ? "|>\n " : "|>\n");
            put(b, m[i].content);
        }
        if (add_assistant) put(b, t == SL_CHAT_CHATGLM3 ? "<|assistant|>" : "<|assistant|>\n");
        break;
    case SL_CHAT_EXAONE4:
    case SL_CHAT_EXAONE_MOE: {
        bool moe = t == SL_CHAT_EXAONE_MOE;
        for (size_t i = 0; i < n; i++) {
            int role = role_kind(m[i].role);
            if (moe) {
                put(b, "<|"), put(b, m[i].role), put(b, "|>\n");
            } else {
                put(b, "[|"), put(b, m[i].role), put(b, "|]");
            }
            put_trimmed(b, m[i].content);
            put(b, role == ROLE_USER && !moe ? "\n" : moe ? "<|endofturn|>\n" : "[|endofturn|]\n");
        }
        if (add_assistant) put(b, moe ? "<|assistant|>\n" : "[|assistant|]");
        break;
    }
    case SL_CHAT_RWKV_WORLD:
        for (size_t i = 0; i < n; i++) {
            int role = role_kind(m[i].role);
            put(b, role == ROLE_SYSTEM ? "System: " : role == ROLE_USER ? "User: " : "Assistant: ");
            put_trimmed(b, m[i].content);
            put(b, "\n\n");
            if (role == ROLE_USER && i == n - 1) put(b, "Assistant:");
        }
        break;
    case SL_CHAT_GRANITE:
    case SL_CHAT_GRANITE_4_0:
    case SL_CHAT_GRANITE_4_1:
        for (size_t i = 0; i < n; i++) {
            bool tool_call = strcmp(m[i].role, "assistant_tool_call") == 0;
            if (tool_call && t != SL_CHAT_GRANITE) {
                put(b, "<|start_of_role|>assistant<|end_of_role|><|tool_call|>");
            } else {
                put(b, "<|start_of_role|>"), put(b, m[i].role), put(b, "<|end_of_role|>");
                if (tool_call) put(b, "<|tool_call|>");
            }
            put(b, m[i].content), put(b, "<|end_of_text|>\n");
        }
        if (add_assistant) put(b, "<|start_of_role|>assistant<|end_of_role|>");
        break;
    case SL_CHAT_GIGACHAT: {
        bool has_system = n > 0 && role_kind(m[0].role) == ROLE_SYSTEM;
        put(b, "<s>");
        if (has_system) put(b, m[0].content), put(b, "<|message_sep|>");
        /* Later system messages have no place and are dropped, as in llama.cpp. */
        for (size_t i = has_system ? 1 : 0; i < n; i++) {
            int role = role_kind(m[i].role);
            if (role == ROLE_USER) {
                put(b, "user<|role_sep|>"), put(b, m[i].content), put(b, "<|message_sep|>");
                put(b, "available functions<|role_sep|>[]<|message_sep|>");
            } else if (role == ROLE_ASSISTANT) {
                put(b, "assistant<|role_sep|>"), put(b, m[i].content), put(b, "<|message_sep|>");
            }
        }
        if (add_assistant) put(b, "assistant<|role_sep|>");
        break;
    }
    case SL_CHAT_YANDEX:
        /* No system turn: system messages are dropped, as in llama.cpp. */
        for (size_t i = 0; i < n; i++) {
            int role = role_kind(m[i].role);
            if (role == ROLE_SYSTEM) continue;
            put(b, role == ROLE_USER ? " Пользователь: " : " Ассистент: ");
            put(b, m[i].content), put(b, "\n\n");
        }
        if (add_assistant) put(b, " Ассистент:[SEP]");
        break;
    case SL_CHAT_BAILING:
    case SL_CHAT_BAILING_THINK:
    case SL_CHAT_BAILING2:
        if (t == SL_CHAT_BAILING2 && !(n > 0 && role_kind(m[0].role) == ROLE_SYSTEM))
            put(b, "<role>SYSTEM</role>detailed thinking off<|role_end|>");
        for (size_t i = 0; i < n; i++) {
            put(b, "<role>");
            if (role_kind(m[i].role) == ROLE_USER) {
                put(b, "HUMAN");
            } else {
                for (const char *c = m[i].role; *c; c++) {
                    char u = ascii_upper(*c);
                    put_n(b, &u, 1);
                }
            }
            put(b, "</role>"), put(b, m[i].content);
            if (t == SL_CHAT_BAILING2) put(b, "<|role_end|>");
        }
        if (add_assistant) put(b, t == SL_CHAT_BAILING_THINK ? "<role>ASSISTANT</role><think>"
                                                              : "<role>ASSISTANT</role>");
        break;
    case SL_CHAT_OPENAI_MOE:
        for (size_t i = 0; i < n; i++) {
            put(b, "<|start|>"), put(b, m[i].role), put(b, "<|message|>"), put(b, m[i].content);
            put(b, role_kind(m[i].role) == ROLE_ASSISTANT ? "<|return|>" : "<|end|>");
        }
        if (add_assistant) put(b, "<|start|>assistant");
        break;
    case SL_CHAT_HUNYUAN_DENSE:
        for (size_t i = 0; i < n; i++) {
            int role = role_kind(m[i].role);
            if (i == 0 && role == ROLE_SYSTEM) put(b, m[i].content), put(b, "<｜hy_place▁holder▁no▁3｜>");
            if (role == ROLE_ASSISTANT) {
                put(b, "<｜hy_Assistant｜>"), put(b, m[i].content), put(b, "<｜hy_place▁holder▁no▁2｜>");
            } else if (role == ROLE_USER) {
                put(b, "<｜hy_User｜>"), put(b, m[i].content), put(b, "<｜hy_Assistant｜>");
            }
        }
        break;
    case SL_CHAT_HUNYUAN_VL:
        put(b, "<｜hy_begin▁of▁sentence｜>");
        for (size_t i = 0; i < n; i++) {
            int role = role_kind(m[i].role);
            if (i == 0 && role == ROLE_SYSTEM) {
                put(b, m[i].content), put(b, "<｜hy_place▁holder▁no▁3｜>");
            } else if (role == ROLE_USER) {
                put(b, m[i].content), put(b, "<｜hy_User｜>");
            } else if (role == ROLE_ASSISTANT) {
                put(b, m[i].content), put(b, "<｜hy_Assistant｜>");
            }
        }
        break;
    case SL_CHAT_KIMI_K2:
        for (size_t i = 0; i < n; i++) {
            int role = role_kind(m[i].role);
            put(b, role == ROLE_SYSTEM      ? "<|im_system|>system<|im_middle|>"
                   : role == ROLE_USER      ? "<|im_user|>user<|im_middle|>"
                   : role == ROLE_ASSISTANT ? "<|im_assistant|>assistant<|im_middle|>"
                                            : "<|im_system|>tool<|im_middle|>");
            put(b, m[i].content), put(b, "<|im_end|>");
        }
        if (add_assistant) put(b, "<|im_assistant|>assistant<|im_middle|>");
        break;
    case SL_CHAT_SEED_OSS:
        for (size_t i = 0; i < n; i++) {
            put(b, "<seed:bos>"), put(b, m[i].role), put(b, "\n");
            put_maybe_trimmed(b, m[i].content, role_kind(m[i].role) == ROLE_ASSISTANT);
            put(b, "<seed:eos>");
        }
        if (add_assistant) put(b, "<seed:bos>assistant\n");
        break;
    case SL_CHAT_GROK2:
        for (size_t i = 0; i < n; i++) {
            int role = role_kind(m[i].role);
            put(b, role == ROLE_SYSTEM ? "System: " : role == ROLE_USER ? "Human: " : "Assistant: ");
            put_maybe_trimmed(b, m[i].content, role != ROLE_ASSISTANT);
            put(b, "<|separator|>\n\n");
        }
        if (add_assistant) put(b, "Assistant:");
        break;
    case SL_CHAT_PANGU_EMBED:
        for (size_t i = 0; i < n; i++) {
            int role = role_kind(m[i].role);
            if (i == 0 && role != ROLE_SYSTEM) put(b, "[unused9]系统：[unused10]");
            put(b, role == ROLE_SYSTEM      ? "[unused9]系统："
                   : role == ROLE_USER      ? "[unused9]用户："
                   : role == ROLE_ASSISTANT ? "[unused9]助手："
                   : role == ROLE_TOOL      ? "[unused9]工具："
                                            : "[unused9]方法：");
            put(b, m[i].content), put(b, "[unused10]");
        }
        if (add_assistant) put(b, "[unused9]助手：");
        break;
    default:
        break;
    }
}

int sl_chat_apply(sl_chat_template t, const sl_chat_msg *msgs, size_t n, bool add_assistant,
                  char **out, sl_error *err) {
    if (!out) return sl_err(err, "chat template: no output pointer");
    *out = NULL;
    if ((int)t <= SL_CHAT_UNKNOWN || (int)t >= SL_CHAT_COUNT)
        return sl_err(err, "chat template: unknown template family %d", (int)t);
    if (n > 0 && !msgs) return sl_err(err, "chat template: %zu messages but no message array", n);
    int allowed = family_roles(t);
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].role || !msgs[i].role[0])
            return sl_err(err, "chat template: message %zu has no role", i);
        if (!msgs[i].content) return sl_err(err, "chat template: message %zu has no content", i);
        if (!(role_kind(msgs[i].role) & allowed))
            return sl_err(err, "chat template %s: unsupported role '%.64s' in message %zu",
                          sl_chat_name(t), msgs[i].role, i);
    }

    text_buf b = {0};
    switch (t) {
    case SL_CHAT_LLAMA2: case SL_CHAT_LLAMA2_SYS: case SL_CHAT_LLAMA2_SYS_BOS:
    case SL_CHAT_LLAMA2_SYS_STRIP:
        render_llama2(t, msgs, n, &b);
        break;
    case SL_CHAT_MISTRAL_V1: case SL_CHAT_MISTRAL_V3: case SL_CHAT_MISTRAL_V3_TEKKEN:
    case SL_CHAT_MISTRAL_V7: case SL_CHAT_MISTRAL_V7_TEKKEN:
        render_mistral(t, msgs, n, &b);
        break;
    case SL_CHAT_GEMMA:
        render_gemma(msgs, n, add_assistant, &b);
        break;
    case SL_CHAT_ORION:
        render_orion(msgs, n, &b);
        break;
    default: {
        bool done = false;
        for (size_t i = 0; i < sizeof role_in_text_families / sizeof role_in_text_families[0]; i++)
            if (role_in_text_families[i].t == t) {
                render_role_in_text(&role_in_text_families[i], msgs, n, add_assistant, &b);
                done = true;
            }
        for (size_t i = 0; i < sizeof fixed_roles_families / sizeof fixed_roles_families[0]; i++)
            if (fixed_roles_families[i].t == t) {
                render_fixed_roles(&fixed_roles_families[i], msgs, n, add_assistant, &b);
                done = true;
            }
        if (!done) render_other(t, msgs, n, add_assistant, &b);
    }
    }

    /* An empty text still needs its terminating NUL. */
    if (!b.out_of_memory && !b.data) {
        b.data = malloc(1);
        if (b.data) b.data[0] = 0; else b.out_of_memory = true;
    }
    if (b.out_of_memory) {
        free(b.data);
        return sl_err(err, "chat template: out of memory rendering %zu messages", n);
    }
    *out = b.data;
    return 0;
}
