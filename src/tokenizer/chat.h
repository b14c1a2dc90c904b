/* chat.h - chat templates: turning a conversation into the prompt text a
 * model was trained on.
 *
 * The template family is detected from the GGUF's tokenizer.chat_template
 * (a Jinja text) by its distinctive markers, as llama.cpp does, and rendered
 * by C code per family (Llama 2, Llama 3, Mistral v1/v3/v7, ChatML (Qwen,
 * SmolLM), Phi-3, Gemma, ...). The rendered text equals what llama.cpp's
 * llama_chat_apply_template produces for the same family and messages. */
#ifndef SL_CHAT_H
#define SL_CHAT_H

#include "util/common.h"

/* The families of llama.cpp's built-in list; sl_chat_name gives llama.cpp's
 * name for each (what --chat-template NAME accepts). */
typedef enum sl_chat_template {
    SL_CHAT_UNKNOWN = 0,
    SL_CHAT_CHATML,            /* <|im_start|>role\n...<|im_end|>\n (Qwen, SmolLM, ...) */
    SL_CHAT_LLAMA2,            /* [INST] ... [/INST], system folded in as plain text */
    SL_CHAT_LLAMA2_SYS,        /* [INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST] */
    SL_CHAT_LLAMA2_SYS_BOS,    /* as LLAMA2_SYS, with <s> before each later [INST] */
    SL_CHAT_LLAMA2_SYS_STRIP,  /* as LLAMA2_SYS, contents trimmed */
    SL_CHAT_LLAMA3,            /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    SL_CHAT_MISTRAL_V1,        /* " [INST] ... [/INST]" */
    SL_CHAT_MISTRAL_V3,        /* "[INST] ...[/INST]", assistant text trimmed */
    SL_CHAT_MISTRAL_V3_TEKKEN, /* "[INST]...[/INST]" */
    SL_CHAT_MISTRAL_V7,        /* [SYSTEM_PROMPT] ...[/SYSTEM_PROMPT][INST] ...[/INST] */
    SL_CHAT_MISTRAL_V7_TEKKEN, /* as V7 without the spaces */
    SL_CHAT_PHI3,              /* <|user|>\n...<|end|>\n<|assistant|>\n */
    SL_CHAT_PHI4,              /* <|im_start|>role<|im_sep|>...<|im_end|> */
    SL_CHAT_FALCON3,           /* <|role|>\n...\n */
    SL_CHAT_ZEPHYR,            /* <|role|>\n...<|endoftext|>\n */
    SL_CHAT_MONARCH,           /* role\n...</s>\n<s>role\n... */
    SL_CHAT_GEMMA,             /* <start_of_turn>user\n...<end_of_turn>\n<start_of_turn>model\n */
    SL_CHAT_ORION,             /* Human: ...\n\nAssistant: </s> */
    SL_CHAT_OPENCHAT,          /* GPT4 Correct User: ...<|end_of_turn|> */
    SL_CHAT_VICUNA,            /* USER: ...\nASSISTANT: ...</s>\n */
    SL_CHAT_VICUNA_ORCA,       /* as VICUNA with "SYSTEM: " */
    SL_CHAT_DEEPSEEK,          /* ### Instruction:\n...\n### Response:\n */
    SL_CHAT_DEEPSEEK2,         /* User: ...\n\nAssistant: */
    SL_CHAT_DEEPSEEK3,         /* <｜User｜>...<｜Assistant｜> */
    SL_CHAT_DEEPSEEK_OCR,      /* contents only */
    SL_CHAT_COMMAND_R,         /* <|START_OF_TURN_TOKEN|><|USER_TOKEN|>... */
    SL_CHAT_CHATGLM3,          /* [gMASK]sop<|role|>\n ... */
    SL_CHAT_CHATGLM4,          /* [gMASK]<sop><|role|>\n... */
    SL_CHAT_GLMEDGE,           /* <|role|>\n... */
    SL_CHAT_MINICPM,           /* <用户>...<AI> */
    SL_CHAT_EXAONE3,           /* [|user|]...\n[|assistant|] */
    SL_CHAT_EXAONE4,           /* as EXAONE3, with a tool role */
    SL_CHAT_EXAONE_MOE,        /* <|role|>\n...<|endofturn|>\n */
    SL_CHAT_RWKV_WORLD,        /* User: ...\n\nAssistant: */
    SL_CHAT_GRANITE,           /* <|start_of_role|>role<|end_of_role|>...<|end_of_text|>\n (3.x) */
    SL_CHAT_GRANITE_4_0,
    SL_CHAT_GRANITE_4_1,
    SL_CHAT_GIGACHAT,          /* user<|role_sep|>...<|message_sep|> */
    SL_CHAT_MEGREZ,            /* <|role_start|>role<|role_end|>...<|turn_end|> */
    SL_CHAT_YANDEX,            /* " Пользователь: ...\n\n Ассистент:[SEP]" */
    SL_CHAT_BAILING,           /* <role>HUMAN</role>... */
    SL_CHAT_BAILING_THINK,     /* as BAILING, ending in <think> */
    SL_CHAT_BAILING2,          /* <role>HUMAN</role>...<|role_end|> */
    SL_CHAT_LLAMA4,            /* <|header_start|>role<|header_end|>\n\n...<|eot|> */
    SL_CHAT_SMOLVLM,           /* <|im_start|>User: ...<end_of_utterance>\nAssistant: */
    SL_CHAT_DOTS1,             /* <|userprompt|>...<|endofuserprompt|><|response|> */
    SL_CHAT_HUNYUAN_MOE,       /* <|startoftext|>...<|extra_0|> */
    SL_CHAT_OPENAI_MOE,        /* gpt-oss: <|start|>role<|message|>...<|end|> */
    SL_CHAT_HUNYUAN_DENSE,     /* <｜hy_User｜>...<｜hy_Assistant｜> */
    SL_CHAT_HUNYUAN_VL,
    SL_CHAT_KIMI_K2,           /* <|im_user|>user<|im_middle|>...<|im_end|> */
    SL_CHAT_SEED_OSS,          /* <seed:bos>role\n...<seed:eos> */
    SL_CHAT_GROK2,             /* Human: ...<|separator|>\n\n */
    SL_CHAT_PANGU_EMBED,       /* [unused9]用户：...[unused10] */
    SL_CHAT_SOLAR_OPEN,        /* <|begin|>role<|content|>...<|end|> */
    SL_CHAT_COUNT
} sl_chat_template;

typedef struct sl_chat_msg {
    const char *role;    /* "system", "user", "assistant" (some families: "tool", ...) */
    const char *content;
} sl_chat_msg;

/* Detects the family of a Jinja chat template text; SL_CHAT_UNKNOWN if none
 * matches. A text that is exactly a family's name (e.g. "chatml") gives that
 * family, as in llama.cpp. */
sl_chat_template sl_chat_detect(const char *jinja);
/* llama.cpp's name of a family ("chatml", "llama2-sys", "mistral-v7", ...);
 * "unknown" for SL_CHAT_UNKNOWN or a value out of range. */
const char *sl_chat_name(sl_chat_template t);
/* The family of a name (for --chat-template NAME); SL_CHAT_UNKNOWN if none. */
sl_chat_template sl_chat_from_name(const char *name);

/* Renders the messages. add_assistant: end with the opening of the
 * assistant's turn (families whose text always ends that way, such as
 * Llama 2 and Mistral, ignore it). The result does not include the BOS token
 * (the tokenizer adds it); it is a malloc'd NUL-terminated string. Errors:
 * an unknown family, a NULL role or content, an empty role, a role the
 * family has no place for (e.g. "tool" for Gemma). */
int sl_chat_apply(sl_chat_template t, const sl_chat_msg *msgs, size_t n, bool add_assistant,
                  char **out, sl_error *err);

#endif
