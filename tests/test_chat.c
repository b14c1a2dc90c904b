/* test_chat.c - chat template detection and rendering.
 *
 * The main vectors are llama.cpp's own (tests/test-chat-template.cpp): real
 * template texts, the standard conversation below, and the text
 * llama_chat_apply_template produces for them. The rest cover what that file
 * does not: add_assistant off, system-message handling, empty conversations,
 * names, errors. */
#include "test.h"
#include "tokenizer/chat.h"

static const sl_chat_msg standard_conversation[] = {
    {"system", "You are a helpful assistant"},
    {"user", "Hello"},
    {"assistant", "Hi there"},
    {"user", "Who are you"},
    {"assistant", "   I am an assistant   "},
    {"user", "Another question"},
};
#define N_STANDARD (sizeof standard_conversation / sizeof standard_conversation[0])

typedef struct llama_cpp_vector {
    const char *name;
    sl_chat_template family;
    const char *jinja;
    const char *expected; /* add_assistant = true */
    const char *tool_call; /* non-NULL: the granite tool-call turns are appended */
} llama_cpp_vector;

/* From llama.cpp's tests/test-chat-template.cpp (data: template texts and outputs). */
static const llama_cpp_vector llama_cpp_vectors[] = {
    {"teknium/OpenHermes-2.5-Mistral-7B", SL_CHAT_CHATML,
     "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
     "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother question<|im_end|>\n<|im_start|>assistant\n",
     NULL},
    {"mistralai/Mistral-7B-Instruct-v0.2 (NOTE: Old pre-v1 without a system prompt)", SL_CHAT_LLAMA2,
     "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}",
     "[INST] You are a helpful assistant\nHello [/INST]Hi there</s>[INST] Who are you [/INST]   I am an assistant   </s>[INST] Another question [/INST]",
     NULL},
    {"TheBloke/FusionNet_34Bx2_MoE-AWQ", SL_CHAT_LLAMA2_SYS_BOS,
     "{%- for idx in range(0, messages|length) -%}\n{%- if messages[idx]['role'] == 'user' -%}\n{%- if idx > 1 -%}\n{{- bos_token + '[INST] ' + messages[idx]['content'] + ' [/INST]' -}}\n{%- else -%}\n{{- messages[idx]['content'] + ' [/INST]' -}}\n{%- endif -%}\n{% elif messages[idx]['role'] == 'system' %}\n{{- '[INST] <<SYS>>\\n' + messages[idx]['content'] + '\\n<</SYS>>\\n\\n' -}}\n{%- elif messages[idx]['role'] == 'assistant' -%}\n{{- ' '  + messages[idx]['content'] + ' ' + eos_token -}}\n{% endif %}\n{% endfor %}",
     "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s><s>[INST] Who are you [/INST]   I am an assistant   </s><s>[INST] Another question [/INST]",
     NULL},
    {"bofenghuang/vigogne-2-70b-chat", SL_CHAT_LLAMA2_SYS_STRIP,
     "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% elif true == true and not '<<SYS>>' in messages[0]['content'] %}{% set loop_messages = messages %}{% set system_message = 'Vous êtes Vigogne, un assistant IA créé par Zaion Lab. Vous suivez extrêmement bien les instructions. Aidez autant que vous le pouvez.' %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'system' %}{{ '<<SYS>>\\n' + content.strip() + '\\n<</SYS>>\\n\\n' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}",
     "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>[INST] Who are you [/INST]I am an assistant</s>[INST] Another question [/INST]",
     NULL},
    {"mlabonne/AlphaMonarch-7B", SL_CHAT_MONARCH,
     "{% for message in messages %}{{bos_token + message['role'] + '\\n' + message['content'] + eos_token + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ bos_token + 'assistant\\n' }}{% endif %}",
     "system\nYou are a helpful assistant</s>\n<s>user\nHello</s>\n<s>assistant\nHi there</s>\n<s>user\nWho are you</s>\n<s>assistant\n   I am an assistant   </s>\n<s>user\nAnother question</s>\n<s>assistant\n",
     NULL},
    {"google/gemma-7b-it", SL_CHAT_GEMMA,
     "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}",
     "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n<start_of_turn>model\nHi there<end_of_turn>\n<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\nI am an assistant<end_of_turn>\n<start_of_turn>user\nAnother question<end_of_turn>\n<start_of_turn>model\n",
     NULL},
    {"OrionStarAI/Orion-14B-Chat", SL_CHAT_ORION,
     "{% for message in messages %}{% if loop.first %}{{ bos_token }}{% endif %}{% if message['role'] == 'user' %}{{ 'Human: ' + message['content'] + '\\n\\nAssistant: ' + eos_token }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}",
     "Human: You are a helpful assistant\n\nHello\n\nAssistant: </s>Hi there</s>Human: Who are you\n\nAssistant: </s>   I am an assistant   </s>Human: Another question\n\nAssistant: </s>",
     NULL},
    {"openchat/openchat-3.5-0106", SL_CHAT_OPENCHAT,
     "{{ bos_token }}{% for message in messages %}{{ 'GPT4 Correct ' + message['role'].title() + ': ' + message['content'] + '<|end_of_turn|>'}}{% endfor %}{% if add_generation_prompt %}{{ 'GPT4 Correct Assistant:' }}{% endif %}",
     "You are a helpful assistant<|end_of_turn|>GPT4 Correct User: Hello<|end_of_turn|>GPT4 Correct Assistant: Hi there<|end_of_turn|>GPT4 Correct User: Who are you<|end_of_turn|>GPT4 Correct Assistant:    I am an assistant   <|end_of_turn|>GPT4 Correct User: Another question<|end_of_turn|>GPT4 Correct Assistant:",
     NULL},
    {"deepseek-ai/deepseek-coder-33b-instruct", SL_CHAT_DEEPSEEK,
     "{% if not add_generation_prompt is defined %}\n{% set add_generation_prompt = false %}\n{% endif %}\n{%- set ns = namespace(found=false) -%}\n{%- for message in messages -%}\n    {%- if message['role'] == 'system' -%}\n        {%- set ns.found = true -%}\n    {%- endif -%}\n{%- endfor -%}\n{{bos_token}}{%- if not ns.found -%}\n{{'You are an AI programming assistant, utilizing the Deepseek Coder model, developed by Deepseek Company, and you only answer questions related to computer science. For politically sensitive questions, security and privacy issues, and other non-computer science questions, you will refuse to answer\\n'}}\n{%- endif %}\n{%- for message in messages %}\n    {%- if message['role'] == 'system' %}\n{{ message['content'] }}\n    {%- else %}\n        {%- if message['role'] == 'user' %}\n{{'### Instruction:\\n' + message['content'] + '\\n'}}\n        {%- else %}\n{{'### Response:\\n' + message['content'] + '\\n<|EOT|>\\n'}}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n{% if add_generation_prompt %}\n{{'### Response:'}}\n{% endif %}",
     "You are a helpful assistant### Instruction:\nHello\n### Response:\nHi there\n<|EOT|>\n### Instruction:\nWho are you\n### Response:\n   I am an assistant   \n<|EOT|>\n### Instruction:\nAnother question\n### Response:\n",
     NULL},
    {"eachadea/vicuna-13b-1.1", SL_CHAT_VICUNA,
     "{%- for message in messages %}{%- if message['role'] == 'system' -%}{{- '' + message['content'] + '\n\n' -}}{%- else -%}{%- if message['role'] == 'user' -%}{{-'USER: ' + message['content'] + '\n'-}}{%- else -%}{{-'ASSISTANT: ' + message['content'] + '</s>\n' -}}{%- endif -%}{%- endif -%}{%- endfor -%}{%- if add_generation_prompt -%}{{-'ASSISTANT:'-}}{%- endif -%}",
     "You are a helpful assistant\n\nUSER: Hello\nASSISTANT: Hi there</s>\nUSER: Who are you\nASSISTANT:    I am an assistant   </s>\nUSER: Another question\nASSISTANT:",
     NULL},
    {"Orca-Vicuna", SL_CHAT_VICUNA_ORCA,
     "{%- for message in messages %}{%- if message['role'] == 'system' -%}{{-'SYSTEM: ' + message['content'] + '\n' -}}{%- else -%}{%- if message['role'] == 'user' -%}{{-'USER: ' + message['content'] + '\n'-}}{%- else -%}{{-'ASSISTANT: ' + message['content'] + '</s>\n' -}}{%- endif -%}{%- endif -%}{%- endfor -%}{%- if add_generation_prompt -%}{{-'ASSISTANT:'-}}{%- endif -%}",
     "SYSTEM: You are a helpful assistant\nUSER: Hello\nASSISTANT: Hi there</s>\nUSER: Who are you\nASSISTANT:    I am an assistant   </s>\nUSER: Another question\nASSISTANT:",
     NULL},
    {"CohereForAI/c4ai-command-r-plus", SL_CHAT_COMMAND_R,
     "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% elif false == true %}{% set loop_messages = messages %}{% set system_message = 'You are Command-R, a brilliant, sophisticated, AI-assistant trained to assist human users by providing thorough responses. You are trained by Cohere.' %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% if system_message != false %}{{ '<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>' + system_message + '<|END_OF_TURN_TOKEN|>' }}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% set content = message['content'] %}{% if message['role'] == 'user' %}{{ '<|START_OF_TURN_TOKEN|><|USER_TOKEN|>' + content.strip() + '<|END_OF_TURN_TOKEN|>' }}{% elif message['role'] == 'assistant' %}{{ '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>'  + content.strip() + '<|END_OF_TURN_TOKEN|>' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>' }}{% endif %}",
     "<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>You are a helpful assistant<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|>Hello<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>Hi there<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|>Who are you<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>I am an assistant<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|>Another question<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>",
     NULL},
    {"Llama-3", SL_CHAT_LLAMA3,
     "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}",
     "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nI am an assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnother question<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
     NULL},
    {"Phi-3-mini", SL_CHAT_PHI3,
     "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') %}{{'<|user|>' + '\n' + message['content'] + '<|end|>' + '\n' + '<|assistant|>' + '\n'}}{% elif (message['role'] == 'assistant') %}{{message['content'] + '<|end|>' + '\n'}}{% endif %}{% endfor %}",
     "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi there<|end|>\n<|user|>\nWho are you<|end|>\n<|assistant|>\n   I am an assistant   <|end|>\n<|user|>\nAnother question<|end|>\n<|assistant|>\n",
     NULL},
    {"Phi-3-small", SL_CHAT_PHI3,
     "{{ bos_token }}{% for message in messages %}{{'<|' + message['role'] + '|>' + '\n' + message['content'] + '<|end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}",
     "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi there<|end|>\n<|user|>\nWho are you<|end|>\n<|assistant|>\n   I am an assistant   <|end|>\n<|user|>\nAnother question<|end|>\n<|assistant|>\n",
     NULL},
    {"Phi-3-medium", SL_CHAT_PHI3,
     "{% for message in messages %}{% if (message['role'] == 'user') %}{{'<|user|>' + '\n' + message['content'] + '<|end|>' + '\n' + '<|assistant|>' + '\n'}}{% elif (message['role'] == 'assistant') %}{{message['content'] + '<|end|>' + '\n'}}{% endif %}{% endfor %}",
     "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi there<|end|>\n<|user|>\nWho are you<|end|>\n<|assistant|>\n   I am an assistant   <|end|>\n<|user|>\nAnother question<|end|>\n<|assistant|>\n",
     NULL},
    {"Phi-3-vision", SL_CHAT_PHI3,
     "{% for message in messages %}{{'<|' + message['role'] + '|>' + '\n' + message['content'] + '<|end|>\n' }}{% endfor %}{% if add_generation_prompt and messages[-1]['role'] != 'assistant' %}{{- '<|assistant|>\n' -}}{% endif %}",
     "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi there<|end|>\n<|user|>\nWho are you<|end|>\n<|assistant|>\n   I am an assistant   <|end|>\n<|user|>\nAnother question<|end|>\n<|assistant|>\n",
     NULL},
    {"ChatGLM3", SL_CHAT_CHATGLM3,
     "{% for message in messages %}{% if loop.first %}[gMASK]sop<|{{ message['role'] }}|>\n {{ message['content'] }}{% else %}<|{{ message['role'] }}|>\n {{ message['content'] }}{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}",
     "[gMASK]sop<|system|>\n You are a helpful assistant<|user|>\n Hello<|assistant|>\n Hi there<|user|>\n Who are you<|assistant|>\n    I am an assistant   <|user|>\n Another question<|assistant|>",
     NULL},
    {"ChatGLM4", SL_CHAT_CHATGLM4,
     "[gMASK]<sop>{% for item in messages %}{% if item['tools'] is defined %}<|system|>\n你是一个名为 ChatGLM 的人工智能助手。你是基于智谱AI训练的语言模型 GLM-4 模型开发的，你的任务是针对用户的问题和要求提供适当的答复和支持。\n\n# 可用工具{% set tools = item['tools'] %}{% for tool in tools %}{% if tool['type'] == 'function' %}\n\n## {{ tool['function']['name'] }}\n\n{{ tool['function'] | tojson(indent=4) }}\n......{% endif %}{% endfor %}{% endif %}{% if item['content'] %}<|{{ item['role'] }}|>{{ item['metadata'] }}\n{{ item['content'] }}{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}",
     "[gMASK]<sop><|system|>\nYou are a helpful assistant<|user|>\nHello<|assistant|>\nHi there<|user|>\nWho are you<|assistant|>\n   I am an assistant   <|user|>\nAnother question<|assistant|>\n",
     NULL},
    {"GLMEdge", SL_CHAT_GLMEDGE,
     "{% for item in messages %}{% if item['role'] == 'system' %}<|system|>\n{{ item['content'] }}{% elif item['role'] == 'user' %}<|user|>\n{{ item['content'] }}{% elif item['role'] == 'assistant' %}<|assistant|>\n{{ item['content'] }}{% endif %}{% endfor %}<|assistant|>",
     "<|system|>\nYou are a helpful assistant<|user|>\nHello<|assistant|>\nHi there<|user|>\nWho are you<|assistant|>\n   I am an assistant   <|user|>\nAnother question<|assistant|>",
     NULL},
    {"MiniCPM-3B-OpenHermes-2.5-v2-GGUF", SL_CHAT_MINICPM,
     "{% for message in messages %}{% if message['role'] == 'user' %}{{'<用户>' + message['content'].strip() + '<AI>'}}{% else %}{{message['content'].strip()}}{% endif %}{% endfor %}",
     "You are a helpful assistant<用户>Hello<AI>Hi there<用户>Who are you<AI>I am an assistant<用户>Another question<AI>",
     NULL},
    {"DeepSeek-V2", SL_CHAT_DEEPSEEK2,
     "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\n\n' }}{% elif message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] + eos_token }}{% elif message['role'] == 'system' %}{{ message['content'] + '\n\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}",
     "You are a helpful assistant\n\nUser: Hello\n\nAssistant: Hi there<｜end▁of▁sentence｜>User: Who are you\n\nAssistant:    I am an assistant   <｜end▁of▁sentence｜>User: Another question\n\nAssistant:",
     NULL},
    {"ibm-granite/granite-3.0-8b-instruct", SL_CHAT_GRANITE,
     "{%- if tools %}\n    {{- '<|start_of_role|>available_tools<|end_of_role|>\n' }}\n    {%- for tool in tools %}\n    {{- tool | tojson(indent=4) }}\n    {%- if not loop.last %}\n        {{- '\n\n' }}\n    {%- endif %}\n    {%- endfor %}\n    {{- '<|end_of_text|>\n' }}\n{%- endif %}\n{%- for message in messages %}\n    {%- if message['role'] == 'system' %}\n    {{- '<|start_of_role|>system<|end_of_role|>' + message['content'] + '<|end_of_text|>\n' }}\n    {%- elif message['role'] == 'user' %}\n    {{- '<|start_of_role|>user<|end_of_role|>' + message['content'] + '<|end_of_text|>\n' }}\n    {%- elif message['role'] == 'assistant' %}\n    {{- '<|start_of_role|>assistant<|end_of_role|>'  + message['content'] + '<|end_of_text|>\n' }}\n    {%- elif message['role'] == 'assistant_tool_call' %}\n    {{- '<|start_of_role|>assistant<|end_of_role|><|tool_call|>' + message['content'] + '<|end_of_text|>\n' }}\n    {%- elif message['role'] == 'tool_response' %}\n    {{- '<|start_of_role|>tool_response<|end_of_role|>' + message['content'] + '<|end_of_text|>\n' }}\n    {%- endif %}\n    {%- if loop.last and add_generation_prompt %}\n    {{- '<|start_of_role|>assistant<|end_of_role|>' }}\n    {%- endif %}\n{%- endfor %}",
     "<|start_of_role|>system<|end_of_role|>You are a helpful assistant<|end_of_text|>\n<|start_of_role|>user<|end_of_role|>Hello<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>Hi there<|end_of_text|>\n<|start_of_role|>user<|end_of_role|>Who are you<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>   I am an assistant   <|end_of_text|>\n<|start_of_role|>user<|end_of_role|>Another question<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>",
     NULL},
    {"mistralai/Mistral-7B-Instruct-v0.2 (mistralai 'v1' template with a system prompt)", SL_CHAT_MISTRAL_V1,
     "{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['content'] %}\n    {%- set loop_messages = messages[1:] %}\n{%- else %}\n    {%- set loop_messages = messages %}\n{%- endif %}\n\n{{- bos_token }}\n{%- for message in loop_messages %}\n    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}\n    {%- endif %}\n    {%- if message['role'] == 'user' %}\n        {%- if loop.first and system_message is defined %}\n            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}\n        {%- else %}\n            {{- ' [INST] ' + message['content'] + ' [/INST]' }}\n        {%- endif %}\n    {%- elif message['role'] == 'assistant' %}\n        {{- ' ' + message['content'] + eos_token}}\n    {%- else %}\n        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}\n    {%- endif %}\n{%- endfor %}\n",
     " [INST] You are a helpful assistant\n\nHello [/INST] Hi there</s> [INST] Who are you [/INST]    I am an assistant   </s> [INST] Another question [/INST]",
     NULL},
    {"Mistral-Large-Instruct-2407 (mistralai 'v3' template; modified to have system prompt at start)", SL_CHAT_MISTRAL_V3,
     "{%- if messages[0][\"role\"] == \"system\" %}\n    {%- set system_message = messages[0][\"content\"] %}\n    {%- set loop_messages = messages[1:] %}\n{%- else %}\n    {%- set loop_messages = messages %}\n{%- endif %}\n{%- if not tools is defined %}\n    {%- set tools = none %}\n{%- endif %}\n{%- set user_messages = loop_messages | selectattr(\"role\", \"equalto\", \"user\") | list %}\n\n{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}\n{%- set ns = namespace() %}\n{%- set ns.index = 0 %}\n{%- for message in loop_messages %}\n    {%- if not (message.role == \"tool\" or message.role == \"tool_results\" or (message.tool_calls is defined and message.tool_calls is not none)) %}\n        {%- if (message[\"role\"] == \"user\") != (ns.index % 2 == 0) %}\n            {{- raise_exception(\"After the optional system message, conversation roles must alternate user/assistant/user/assistant/...\") }}\n        {%- endif %}\n        {%- set ns.index = ns.index + 1 %}\n    {%- endif %}\n{%- endfor %}\n\n{{- bos_token }}\n{%- for message in loop_messages %}\n    {%- if message[\"role\"] == \"user\" %}\n        {%- if tools is not none and (message == user_messages[-1]) %}\n            {{- \"[AVAILABLE_TOOLS] [\" }}\n            {%- for tool in tools %}\n                {%- set tool = tool.function %}\n                {{- '{\"type\": \"function\", \"function\": {' }}\n                {%- for key, val in tool.items() if key != \"return\" %}\n                    {%- if val is string %}\n                        {{- '\"' + key + '\": \"' + val + '\"' }}\n                    {%- else %}\n                        {{- '\"' + key + '\": ' + val|tojson }}\n                    {%- endif %}\n                    {%- if not loop.last %}\n                        {{- \", \" }}\n                    {%- endif %}\n                {%- endfor %}\n                {{- \"}}\" }}\n                {%- if not loop.last %}\n                    {{- \", \" }}\n                {%- else %}\n                    {{- \"]\" }}\n                {%- endif %}\n            {%- endfor %}\n            {{- \"[/AVAILABLE_TOOLS]\" }}\n            {%- endif %}\n        {%- if loop.last and system_message is defined %}\n            {{- \"[INST] \" + system_message + \"\\n\\n\" + message[\"content\"] + \"[/INST]\" }}\n        {%- else %}\n            {{- \"[INST] \" + message[\"content\"] + \"[/INST]\" }}\n        {%- endif %}\n    {%- elif message.tool_calls is defined and message.tool_calls is not none %}\n        {{- \"[TOOL_CALLS] [\" }}\n        {%- for tool_call in message.tool_calls %}\n            {%- set out = tool_call.function|tojson %}\n            {{- out[:-1] }}\n            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}\n                {{- raise_exception(\"Tool call IDs should be alphanumeric strings with length 9!\") }}\n            {%- endif %}\n            {{- ', \"id\": \"' + tool_call.id + '\"}' }}\n            {%- if not loop.last %}\n                {{- \", \" }}\n            {%- else %}\n                {{- \"]\" + eos_token }}\n            {%- endif %}\n        {%- endfor %}\n    {%- elif message[\"role\"] == \"assistant\" %}\n        {{- \" \" + message[\"content\"]|trim + eos_token}}\n    {%- elif message[\"role\"] == \"tool_results\" or message[\"role\"] == \"tool\" %}\n        {%- if message.content is defined and message.content.content is defined %}\n            {%- set content = message.content.content %}\n        {%- else %}\n            {%- set content = message.content %}\n        {%- endif %}\n        {{- '[TOOL_RESULTS] {\"content\": ' + content|string + \", \" }}\n        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}\n            {{- raise_exception(\"Tool call IDs should be alphanumeric strings with length 9!\") }}\n        {%- endif %}\n        {{- '\"call_id\": \"' + message.tool_call_id + '\"}[/TOOL_RESULTS]' }}\n    {%- else %}\n        {{- raise_exception(\"Only user and assistant roles are supported, with the exception of an initial optional system message!\") }}\n    {%- endif %}\n{%- endfor %}\n",
     "[INST] You are a helpful assistant\n\nHello[/INST] Hi there</s>[INST] Who are you[/INST] I am an assistant</s>[INST] Another question[/INST]",
     NULL},
    {"Mistral-Nemo-Instruct-2407 (mistralai 'v3-tekken' template; modified to have system prompt at start)", SL_CHAT_MISTRAL_V3_TEKKEN,
     "{%- if messages[0][\"role\"] == \"system\" %}\n    {%- set system_message = messages[0][\"content\"] %}\n    {%- set loop_messages = messages[1:] %}\n{%- else %}\n    {%- set loop_messages = messages %}\n{%- endif %}\n{%- if not tools is defined %}\n    {%- set tools = none %}\n{%- endif %}\n{%- set user_messages = loop_messages | selectattr(\"role\", \"equalto\", \"user\") | list %}\n\n{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}\n{%- set ns = namespace() %}\n{%- set ns.index = 0 %}\n{%- for message in loop_messages %}\n    {%- if not (message.role == \"tool\" or message.role == \"tool_results\" or (message.tool_calls is defined and message.tool_calls is not none)) %}\n        {%- if (message[\"role\"] == \"user\") != (ns.index % 2 == 0) %}\n            {{- raise_exception(\"After the optional system message, conversation roles must alternate user/assistant/user/assistant/...\") }}\n        {%- endif %}\n        {%- set ns.index = ns.index + 1 %}\n    {%- endif %}\n{%- endfor %}\n\n{{- bos_token }}\n{%- for message in loop_messages %}\n    {%- if message[\"role\"] == \"user\" %}\n        {%- if tools is not none and (message == user_messages[-1]) %}\n            {{- \"[AVAILABLE_TOOLS][\" }}\n            {%- for tool in tools %}\n                {%- set tool = tool.function %}\n                {{- '{\"type\": \"function\", \"function\": {' }}\n                {%- for key, val in tool.items() if key != \"return\" %}\n                    {%- if val is string %}\n                        {{- '\"' + key + '\": \"' + val + '\"' }}\n                    {%- else %}\n                        {{- '\"' + key + '\": ' + val|tojson }}\n                    {%- endif %}\n                    {%- if not loop.last %}\n                        {{- \", \" }}\n                    {%- endif %}\n                {%- endfor %}\n                {{- \"}}\" }}\n                {%- if not loop.last %}\n                    {{- \", \" }}\n                {%- else %}\n                    {{- \"]\" }}\n                {%- endif %}\n            {%- endfor %}\n            {{- \"[/AVAILABLE_TOOLS]\" }}\n            {%- endif %}\n        {%- if loop.last and system_message is defined %}\n            {{- \"[INST]\" + system_message + \"\\n\\n\" + message[\"content\"] + \"[/INST]\" }}\n        {%- else %}\n            {{- \"[INST]\" + message[\"content\"] + \"[/INST]\" }}\n        {%- endif %}\n    {%- elif (message.tool_calls is defined and message.tool_calls is not none) %}\n        {{- \"[TOOL_CALLS][\" }}\n        {%- for tool_call in message.tool_calls %}\n            {%- set out = tool_call.function|tojson %}\n            {{- out[:-1] }}\n            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}\n                {{- raise_exception(\"Tool call IDs should be alphanumeric strings with length 9!\") }}\n            {%- endif %}\n            {{- ', \"id\": \"' + tool_call.id + '\"}' }}\n            {%- if not loop.last %}\n                {{- \", \" }}\n            {%- else %}\n                {{- \"]\" + eos_token }}\n            {%- endif %}\n        {%- endfor %}\n    {%- elif message[\"role\"] == \"assistant\" %}\n        {{- message[\"content\"] + eos_token}}\n    {%- elif message[\"role\"] == \"tool_results\" or message[\"role\"] == \"tool\" %}\n        {%- if message.content is defined and message.content.content is defined %}\n            {%- set content = message.content.content %}\n        {%- else %}\n            {%- set content = message.content %}\n        {%- endif %}\n        {{- '[TOOL_RESULTS]{\"content\": ' + content|string + \", \" }}\n        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}\n            {{- raise_exception(\"Tool call IDs should be alphanumeric strings with length 9!\") }}\n        {%- endif %}\n        {{- '\"call_id\": \"' + message.tool_call_id + '\"}[/TOOL_RESULTS]' }}\n    {%- else %}\n        {{- raise_exception(\"Only user and assistant roles are supported, with the exception of an initial optional system message!\") }}\n    {%- endif %}\n{%- endfor %}\n",
     "[INST]You are a helpful assistant\n\nHello[/INST]Hi there</s>[INST]Who are you[/INST]   I am an assistant   </s>[INST]Another question[/INST]",
     NULL},
    {"mistralai/Mistral-Large-Instruct-2411 (mistralai 'v7' template)", SL_CHAT_MISTRAL_V7,
     "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + '[/INST]' }}{% elif message['role'] == 'system' %}{{ '[SYSTEM_PROMPT] ' + message['content'] + '[/SYSTEM_PROMPT]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + eos_token }}{% else %}{{ raise_exception('Only user, system and assistant roles are supported!') }}{% endif %}{% endfor %}",
     "[SYSTEM_PROMPT] You are a helpful assistant[/SYSTEM_PROMPT][INST] Hello[/INST] Hi there</s>[INST] Who are you[/INST]    I am an assistant   </s>[INST] Another question[/INST]",
     NULL},
    {"ai-sage/GigaChat-20B-A3B-instruct", SL_CHAT_GIGACHAT,
     "{% if messages[0]['role'] == 'system' -%}\n    {%- set loop_messages = messages[1:] -%}\n    {%- set system_message = bos_token + messages[0]['content'] + additional_special_tokens[1] -%}\n{%- else -%}\n    {%- set loop_messages = messages -%}\n    {%- set system_message = bos_token + '' -%}\n{%- endif -%}\n{%- for message in loop_messages %}\n    {% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n        {{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}\n    {% endif %}\n    \n    {%- if loop.index0 == 0 -%}\n        {{ system_message -}}\n    {%- endif -%}\n    {%- if message['role'] == 'user' -%}\n        {{ message['role'] + additional_special_tokens[0] + message['content'] + additional_special_tokens[1] -}}\n        {{ 'available functions' + additional_special_tokens[0] + additional_special_tokens[2] + additional_special_tokens[3]  + additional_special_tokens[1] -}}\n    {%- endif -%}\n    {%- if message['role'] == 'assistant' -%}\n        {{ message['role'] + additional_special_tokens[0] + message['content'] + additional_special_tokens[1] -}}\n    {%- endif -%}\n    {%- if loop.last and add_generation_prompt -%}\n        {{ 'assistant' + additional_special_tokens[0] -}}\n    {%- endif -%}\n{%- endfor %}",
     "<s>You are a helpful assistant<|message_sep|>user<|role_sep|>Hello<|message_sep|>available functions<|role_sep|>[]<|message_sep|>assistant<|role_sep|>Hi there<|message_sep|>user<|role_sep|>Who are you<|message_sep|>available functions<|role_sep|>[]<|message_sep|>assistant<|role_sep|>   I am an assistant   <|message_sep|>user<|role_sep|>Another question<|message_sep|>available functions<|role_sep|>[]<|message_sep|>assistant<|role_sep|>",
     NULL},
    {"Infinigence/Megrez-3B-Instruct", SL_CHAT_MEGREZ,
     "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|role_start|>system<|role_end|>你是Megrez-3B-Instruct，将针对用户的问题给出详细的、积极的回答。<|turn_end|>' }}{% endif %}{{ '<|role_start|>' + message['role'] + '<|role_end|>' + message['content'] + '<|turn_end|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|role_start|>assistant<|role_end|>' }}{% endif %}",
     "<|role_start|>system<|role_end|>You are a helpful assistant<|turn_end|><|role_start|>user<|role_end|>Hello<|turn_end|><|role_start|>assistant<|role_end|>Hi there<|turn_end|><|role_start|>user<|role_end|>Who are you<|turn_end|><|role_start|>assistant<|role_end|>   I am an assistant   <|turn_end|><|role_start|>user<|role_end|>Another question<|turn_end|><|role_start|>assistant<|role_end|>",
     NULL},
    {"phi-4", SL_CHAT_PHI4,
     "{% for message in messages %}{% if (message['role'] == 'system') %}{{'<|im_start|>system<|im_sep|>' + message['content'] + '<|im_end|>'}}{% elif (message['role'] == 'user') %}{{'<|im_start|>user<|im_sep|>' + message['content'] + '<|im_end|><|im_start|>assistant<|im_sep|>'}}{% elif (message['role'] == 'assistant') %}{{message['content'] + '<|im_end|>'}}{% endif %}{% endfor %}",
     "<|im_start|>system<|im_sep|>You are a helpful assistant<|im_end|><|im_start|>user<|im_sep|>Hello<|im_end|><|im_start|>assistant<|im_sep|>Hi there<|im_end|><|im_start|>user<|im_sep|>Who are you<|im_end|><|im_start|>assistant<|im_sep|>   I am an assistant   <|im_end|><|im_start|>user<|im_sep|>Another question<|im_end|><|im_start|>assistant<|im_sep|>",
     NULL},
    {"yandex/YandexGPT-5-Lite-8B-instruct", SL_CHAT_YANDEX,
     "<s>{%- set names = {'assistant': ' Ассистент:', 'user': ' Пользователь:'} %}\n{%- set tools_prefix = 'Тебе доступны следующие функции:' %}\n{%- macro __render_tool(tool) %}\n    {%- set name = tool.function.name %}\n    {%- set description = tool.function.description|default('') %}\n    {%- set parameters = tool.function.parameters|tojson %}\n    {{- '\\n' }}function {{ '{' }}'name':'{{ name }}',\n    {%- if tool.function.description %}'description':'{{ description }}',{% endif %}\n'parameters':{{ parameters }}\n    {{- '}' }}\n{%- endmacro %}\n{%- macro __render_tools(tools) %}\n    {{- tools_prefix }}\n    {%- for tool in tools %}\n        {{- __render_tool(tool) }}\n    {%- endfor %}\n    {{- '\\n\\n' }}\n{%- endmacro %}\n{%- macro __render_tool_message(message) %}\n    {{- '\\n\\nРезультат вызова' }} {{ message.name }}: {{ message.content }} {{ '\\n\\n' }}\n{%- endmacro %}\n{%- if tools -%}\n    {{- __render_tools(tools) }}\n{%- endif -%}\n{%- macro __render_user_message(message) %}\n{{ names.user }} {{ message.content + '\\n\\n' }}\n{%- endmacro %}\n{%- macro __render_assistant_message(message) %}\n    {{- names.assistant }}\n    {%- set call = message['function_call'] %}\n    {%- if call %}\n        {{- '\\n[TOOL_CALL_START]' }}{{ call.name }}{{ '\\n' }}{{ call.arguments|tojson }}\n    {%- else %}\n        {{- ' ' + message.content + '\\n\\n' }}\n    {%- endif %}\n{%- endmacro %}\n{%- if not add_generation_prompt is defined %}\n{%- set add_generation_prompt = false %}\n{%- endif %}\n{%- for message in messages %}\n    {%- if message['role'] == 'user' %}\n        {{- __render_user_message(message) }}\n    {%- endif %}\n    {%- if message.role == 'assistant' and not loop.last %}\n        {{- __render_assistant_message(message) }}\n    {%- endif %}\n    {%- if message.role == 'tool' %}\n        {{- __render_tool_message(message) }}\n    {%- endif %}\n    {%- if loop.last %}\n        {{- ' Ассистент:[SEP]' }}\n    {%- endif %}\n{%- endfor %}\n",
     " Пользователь: Hello\n\n Ассистент: Hi there\n\n Пользователь: Who are you\n\n Ассистент:    I am an assistant   \n\n Пользователь: Another question\n\n Ассистент:[SEP]",
     NULL},
    {"inclusionAI/Ling-lite", SL_CHAT_BAILING,
     "{% for message in messages %}{% set role = message['role'] | lower %}{% if role == 'user' %}{% set role = 'HUMAN' %}{% endif %}{% set role = role | upper %}{{ '<role>' + role + '</role>' + message['content'] }}{% endfor %}{% if add_generation_prompt %}{{ '<role>ASSISTANT</role>' }}{% endif %}",
     "<role>SYSTEM</role>You are a helpful assistant<role>HUMAN</role>Hello<role>ASSISTANT</role>Hi there<role>HUMAN</role>Who are you<role>ASSISTANT</role>   I am an assistant   <role>HUMAN</role>Another question<role>ASSISTANT</role>",
     NULL},
    {"ByteDance-Seed/Seed-OSS-36B-Instruct", SL_CHAT_SEED_OSS,
     "{# <seed:bos> #}{%- for message in messages %}{%- if message.role in [\"user\", \"system\"] %}{{ bos_token + message.role + \"\\n\" + message.content + eos_token }}{%- elif message.role == \"assistant\" %}{{ bos_token + message.role }}{%- if message.content is defined and message.content is string and message.content|trim|length > 0 %}{{ \"\\n\" + message.content|trim + eos_token }}{%- endif %}{%- else %}{{ bos_token + message.role + \"\\n\" + message.content + eos_token }}{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{ bos_token + \"assistant\\n\" }}{%- endif %}",
     "<seed:bos>system\nYou are a helpful assistant<seed:eos><seed:bos>user\nHello<seed:eos><seed:bos>assistant\nHi there<seed:eos><seed:bos>user\nWho are you<seed:eos><seed:bos>assistant\nI am an assistant<seed:eos><seed:bos>user\nAnother question<seed:eos><seed:bos>assistant\n",
     NULL},
    {"ibm-granite/granite-3.x (tool call)", SL_CHAT_GRANITE,
     "{%- for message in messages %}\n    {%- if message['role'] == 'assistant_tool_call' %}\n    {{- '<|start_of_role|>assistant<|end_of_role|><|tool_call|>' + message['content'] + '<|end_of_text|>\\n' }}\n    {%- else %}\n    {{- '<|start_of_role|>' + message['role'] + '<|end_of_role|>' + message['content'] + '<|end_of_text|>\\n' }}\n    {%- endif %}\n    {%- if loop.last and add_generation_prompt %}\n    {{- '<|start_of_role|>assistant<|end_of_role|>' }}\n    {%- endif %}\n{%- endfor %}",
     "<|start_of_role|>system<|end_of_role|>You are a helpful assistant<|end_of_text|>\n<|start_of_role|>user<|end_of_role|>Hello<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>Hi there<|end_of_text|>\n<|start_of_role|>user<|end_of_role|>Who are you<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>   I am an assistant   <|end_of_text|>\n<|start_of_role|>user<|end_of_role|>Another question<|end_of_text|>\n<|start_of_role|>user<|end_of_role|>What is the weather?<|end_of_text|>\n<|start_of_role|>assistant_tool_call<|end_of_role|><|tool_call|>[{\"name\": \"get_weather\", \"arguments\": {\"location\": \"NYC\"}}]<|end_of_text|>\n<|start_of_role|>tool_response<|end_of_role|>{\"temperature\": 72}<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>",
     "[{\"name\": \"get_weather\", \"arguments\": {\"location\": \"NYC\"}}]"},
    {"ibm-granite/granite-4.0 (tool call)", SL_CHAT_GRANITE_4_0,
     "{%- for message in messages %}\n    {%- if message['role'] == 'assistant_tool_call' %}\n    {{- '<|start_of_role|>assistant<|end_of_role|><|tool_call|>' + message['content'] + '<|end_of_text|>\\n' }}\n    {%- else %}\n    {{- '<|start_of_role|>' + message['role'] + '<|end_of_role|>' + message['content'] + '<|end_of_text|>\\n' }}\n    {%- endif %}\n    {%- if loop.last and add_generation_prompt %}\n    {{- '<|start_of_role|>assistant<|end_of_role|>' }}\n    {%- endif %}\n{%- endfor %}\n{# <tool_call> <tools> g4_default_system_message #}",
     "<|start_of_role|>system<|end_of_role|>You are a helpful assistant<|end_of_text|>\n<|start_of_role|>user<|end_of_role|>Hello<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>Hi there<|end_of_text|>\n<|start_of_role|>user<|end_of_role|>Who are you<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>   I am an assistant   <|end_of_text|>\n<|start_of_role|>user<|end_of_role|>Another question<|end_of_text|>\n<|start_of_role|>user<|end_of_role|>What is the weather?<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|><|tool_call|><tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"NYC\"}}\n</tool_call><|end_of_text|>\n<|start_of_role|>tool_response<|end_of_role|>{\"temperature\": 72}<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>",
     "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"NYC\"}}\n</tool_call>"},
    {"ibm-granite/granite-4.1 (tool call)", SL_CHAT_GRANITE_4_1,
     "{%- for message in messages %}\n    {%- if message['role'] == 'assistant_tool_call' %}\n    {{- '<|start_of_role|>assistant<|end_of_role|><|tool_call|>' + message['content'] + '<|end_of_text|>\\n' }}\n    {%- else %}\n    {{- '<|start_of_role|>' + message['role'] + '<|end_of_role|>' + message['content'] + '<|end_of_text|>\\n' }}\n    {%- endif %}\n    {%- if loop.last and add_generation_prompt %}\n    {{- '<|start_of_role|>assistant<|end_of_role|>' }}\n    {%- endif %}\n{%- endfor %}\n{# <tool_call> <tools> #}",
     "<|start_of_role|>system<|end_of_role|>You are a helpful assistant<|end_of_text|>\n<|start_of_role|>user<|end_of_role|>Hello<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>Hi there<|end_of_text|>\n<|start_of_role|>user<|end_of_role|>Who are you<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>   I am an assistant   <|end_of_text|>\n<|start_of_role|>user<|end_of_role|>Another question<|end_of_text|>\n<|start_of_role|>user<|end_of_role|>What is the weather?<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|><|tool_call|><tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"NYC\"}}\n</tool_call><|end_of_text|>\n<|start_of_role|>tool_response<|end_of_role|>{\"temperature\": 72}<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>",
     "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"NYC\"}}\n</tool_call>"},
};
#define N_VECTORS (sizeof llama_cpp_vectors / sizeof llama_cpp_vectors[0])

/* Renders and compares; prints both texts when they differ. */
static void check_render(const char *what, sl_chat_template t, const sl_chat_msg *msgs, size_t n,
                         bool add_assistant, const char *expected) {
    char *out = NULL;
    sl_error err = {{0}};
    int rc = sl_chat_apply(t, msgs, n, add_assistant, &out, &err);
    CHECKF(rc == 0, "%s: %s", what, err.msg);
    if (rc == 0) {
        CHECKF(out && strcmp(out, expected) == 0, "%s (%s)\nexpected: [%s]\nactual:   [%s]", what,
               sl_chat_name(t), expected, out ? out : "(null)");
    }
    free(out);
}

static void check_fails(const char *what, sl_chat_template t, const sl_chat_msg *msgs, size_t n) {
    char *out = (char *)"sentinel";
    sl_error err = {{0}};
    CHECKF(sl_chat_apply(t, msgs, n, true, &out, &err) != 0, "%s: accepted", what);
    CHECKF(out == NULL, "%s: output not cleared", what);
    CHECKF(err.msg[0] != 0 && strchr(err.msg, '\n') == NULL, "%s: no one-line message", what);
}

static void test_llama_cpp_vectors(void) {
    for (size_t i = 0; i < N_VECTORS; i++) {
        const llama_cpp_vector *v = &llama_cpp_vectors[i];
        sl_chat_template got = sl_chat_detect(v->jinja);
        CHECKF(got == v->family, "%s: detected %s, expected %s", v->name, sl_chat_name(got),
               sl_chat_name(v->family));
        sl_chat_msg msgs[N_STANDARD + 3];
        memcpy(msgs, standard_conversation, sizeof standard_conversation);
        size_t n = N_STANDARD;
        if (v->tool_call) {
            msgs[n++] = (sl_chat_msg){"user", "What is the weather?"};
            msgs[n++] = (sl_chat_msg){"assistant_tool_call", v->tool_call};
            msgs[n++] = (sl_chat_msg){"tool_response", "{\"temperature\": 72}"};
        }
        check_render(v->name, v->family, msgs, n, true, v->expected);
    }
}

/* Template texts of the families the project runs first, as their GGUFs carry them. */
static void test_detect_real_templates(void) {
    static const struct {
        const char *jinja;
        sl_chat_template family;
    } cases[] = {
        /* Qwen2-Instruct */
        {"{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
         "'<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + "
         "message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if "
         "add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
         SL_CHAT_CHATML},
        /* SmolLM2-Instruct */
        {"{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
         "'<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
         "Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] "
         "+ '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' "
         "}}{% endif %}",
         SL_CHAT_CHATML},
        /* Llama-3.2-Instruct (abridged: the part after the tool handling) */
        {"{{- bos_token }}\n{%- for message in messages %}\n    {{- '<|start_header_id|>' + "
         "message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}\n"
         "{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- "
         "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n{%- endif %}\n",
         SL_CHAT_LLAMA3},
        /* Llama-2-chat: it strips the contents */
        {"{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set "
         "system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set "
         "system_message = false %}{% endif %}{% for message in loop_messages %}{% if loop.index0 == 0 "
         "and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
         "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% "
         "endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' "
         "[/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + "
         "eos_token }}{% endif %}{% endfor %}",
         SL_CHAT_LLAMA2_SYS_STRIP},
        /* Phi-3.5-mini-instruct */
        {"{% for message in messages %}{% if message['role'] == 'system' and message['content'] "
         "%}{{'<|system|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'user' "
         "%}{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'assistant' "
         "%}{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}{% if "
         "add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}",
         SL_CHAT_PHI3},
        /* gemma-2-it */
        {"{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not "
         "supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'assistant') "
         "%}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ "
         "'<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor "
         "%}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}",
         SL_CHAT_GEMMA},
        /* A Zephyr-style template (no literal <|assistant|>, which would make it GLMEdge) */
        {"{% for message in messages %}{% if message['role'] == 'user' %}{{ '<|user|>\\n' + "
         "message['content'] + '<|endoftext|>\\n' }}{% else %}{{ '<|' + message['role'] + '|>\\n' + "
         "message['content'] + '<|endoftext|>\\n' }}{% endif %}{% endfor %}{% if add_generation_prompt "
         "%}{{ '<|' + 'assistant|>\\n' }}{% endif %}",
         SL_CHAT_ZEPHYR},
        /* Mistral-Small-3.1 (v7-tekken spacing; llama.cpp detects it as v7) */
        {"{{- bos_token }}{%- for message in messages %}{%- if message['role'] == 'system' "
         "%}{{- '[SYSTEM_PROMPT]' + message['content'] + '[/SYSTEM_PROMPT]' }}{%- elif message['role'] "
         "== 'user' %}{{- '[INST]' + message['content'] + '[/INST]' }}{%- endif %}{%- endfor %}",
         SL_CHAT_MISTRAL_V7},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sl_chat_template got = sl_chat_detect(cases[i].jinja);
        CHECKF(got == cases[i].family, "case %zu: detected %s, expected %s", i, sl_chat_name(got),
               sl_chat_name(cases[i].family));
    }
    CHECK(sl_chat_detect(NULL) == SL_CHAT_UNKNOWN);
    CHECK(sl_chat_detect("") == SL_CHAT_UNKNOWN);
    CHECK(sl_chat_detect("{{ messages }} plain text, no markers") == SL_CHAT_UNKNOWN);
    /* A text that is a family's name is that family (as llama.cpp does). */
    CHECK(sl_chat_detect("chatml") == SL_CHAT_CHATML);
    CHECK(sl_chat_detect("mistral-v7-tekken") == SL_CHAT_MISTRAL_V7_TEKKEN);
    /* Anything else starting with "mistral" is a Llama 2 style template. */
    CHECK(sl_chat_detect("mistral something") == SL_CHAT_LLAMA2);
}

/* Expected texts checked against llama.cpp's llm_chat_apply_template. */
static void test_render_more_families(void) {
    const sl_chat_msg *c = standard_conversation;
    check_render("zephyr", SL_CHAT_ZEPHYR, c, N_STANDARD, true,
                 "<|system|>\nYou are a helpful assistant<|endoftext|>\n<|user|>\nHello<|endoftext|>\n"
                 "<|assistant|>\nHi there<|endoftext|>\n<|user|>\nWho are you<|endoftext|>\n"
                 "<|assistant|>\n   I am an assistant   <|endoftext|>\n<|user|>\nAnother "
                 "question<|endoftext|>\n<|assistant|>\n");
    check_render("mistral-v7-tekken", SL_CHAT_MISTRAL_V7_TEKKEN, c, N_STANDARD, true,
                 "[SYSTEM_PROMPT]You are a helpful assistant[/SYSTEM_PROMPT][INST]Hello[/INST]Hi "
                 "there</s>[INST]Who are you[/INST]   I am an assistant   </s>[INST]Another "
                 "question[/INST]");
    check_render("llama2-sys", SL_CHAT_LLAMA2_SYS, c, N_STANDARD, true,
                 "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi "
                 "there</s>[INST] Who are you [/INST]   I am an assistant   </s>[INST] Another "
                 "question [/INST]");
    check_render("deepseek3", SL_CHAT_DEEPSEEK3, c, N_STANDARD, true,
                 "You are a helpful assistant\n\n<｜User｜>Hello<｜Assistant｜>Hi "
                 "there<｜end▁of▁sentence｜><｜User｜>Who are you<｜Assistant｜>   I am an assistant   "
                 "<｜end▁of▁sentence｜><｜User｜>Another question<｜Assistant｜>");
    check_render("falcon3", SL_CHAT_FALCON3, c, N_STANDARD, true,
                 "<|system|>\nYou are a helpful assistant\n<|user|>\nHello\n<|assistant|>\nHi "
                 "there\n<|user|>\nWho are you\n<|assistant|>\n   I am an assistant   \n<|user|>\nAnother "
                 "question\n<|assistant|>\n");
    check_render("llama4", SL_CHAT_LLAMA4, c, N_STANDARD, true,
                 "<|header_start|>system<|header_end|>\n\nYou are a helpful "
                 "assistant<|eot|><|header_start|>user<|header_end|>\n\nHello<|eot|><|header_start|>"
                 "assistant<|header_end|>\n\nHi there<|eot|><|header_start|>user<|header_end|>\n\nWho "
                 "are you<|eot|><|header_start|>assistant<|header_end|>\n\nI am an "
                 "assistant<|eot|><|header_start|>user<|header_end|>\n\nAnother "
                 "question<|eot|><|header_start|>assistant<|header_end|>\n\n");
    check_render("exaone3", SL_CHAT_EXAONE3, c, N_STANDARD, true,
                 "[|system|]You are a helpful assistant[|endofturn|]\n[|user|]Hello\n[|assistant|]Hi "
                 "there[|endofturn|]\n[|user|]Who are you\n[|assistant|]I am an "
                 "assistant[|endofturn|]\n[|user|]Another question\n[|assistant|]");
    check_render("gpt-oss", SL_CHAT_OPENAI_MOE, c, N_STANDARD, true,
                 "<|start|>system<|message|>You are a helpful "
                 "assistant<|end|><|start|>user<|message|>Hello<|end|><|start|>assistant<|message|>Hi "
                 "there<|return|><|start|>user<|message|>Who are "
                 "you<|end|><|start|>assistant<|message|>   I am an assistant   "
                 "<|return|><|start|>user<|message|>Another question<|end|><|start|>assistant");
    /* v3 trims the assistant's text, v1/v3-tekken do not */
    const sl_chat_msg short_chat[] = {{"user", "a"}, {"assistant", "  b  "}, {"user", "c"}};
    check_render("mistral-v3 trims", SL_CHAT_MISTRAL_V3, short_chat, 3, true,
                 "[INST] a[/INST] b</s>[INST] c[/INST]");
    check_render("mistral-v3-tekken", SL_CHAT_MISTRAL_V3_TEKKEN, short_chat, 3, true,
                 "[INST]a[/INST]  b  </s>[INST]c[/INST]");
    check_render("mistral-v1", SL_CHAT_MISTRAL_V1, short_chat, 3, true,
                 " [INST] a [/INST]   b  </s> [INST] c [/INST]");
    check_render("llama2-sys-bos", SL_CHAT_LLAMA2_SYS_BOS, short_chat, 3, true,
                 "[INST] a [/INST]  b  </s><s>[INST] c [/INST]");
}

static void test_add_assistant(void) {
    const sl_chat_msg *c = standard_conversation;
    check_render("chatml without opening", SL_CHAT_CHATML, c, 2, false,
                 "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\n"
                 "Hello<|im_end|>\n");
    check_render("chatml with opening", SL_CHAT_CHATML, c, 2, true,
                 "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\n"
                 "Hello<|im_end|>\n<|im_start|>assistant\n");
    check_render("llama3 without opening", SL_CHAT_LLAMA3, c + 1, 1, false,
                 "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>");
    check_render("llama3 with opening", SL_CHAT_LLAMA3, c + 1, 1, true,
                 "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
                 "<|start_header_id|>assistant<|end_header_id|>\n\n");
    check_render("phi3 without opening", SL_CHAT_PHI3, c + 1, 1, false, "<|user|>\nHello<|end|>\n");
    check_render("phi3 with opening", SL_CHAT_PHI3, c + 1, 1, true,
                 "<|user|>\nHello<|end|>\n<|assistant|>\n");
    check_render("gemma without opening", SL_CHAT_GEMMA, c + 1, 1, false,
                 "<start_of_turn>user\nHello<end_of_turn>\n");
    /* For every family, the text with the opening starts with the text without it. */
    for (int t = SL_CHAT_UNKNOWN + 1; t < SL_CHAT_COUNT; t++) {
        char *with = NULL, *without = NULL;
        sl_error err;
        int rc1 = sl_chat_apply((sl_chat_template)t, c, N_STANDARD, true, &with, &err);
        int rc2 = sl_chat_apply((sl_chat_template)t, c, N_STANDARD, false, &without, &err);
        CHECKF(rc1 == 0 && rc2 == 0, "%s: %s", sl_chat_name((sl_chat_template)t), err.msg);
        if (rc1 == 0 && rc2 == 0)
            CHECKF(strncmp(with, without, strlen(without)) == 0, "%s: [%s] vs [%s]",
                   sl_chat_name((sl_chat_template)t), with, without);
        free(with);
        free(without);
    }
}

static void test_system_messages(void) {
    /* Gemma: system text (trimmed) opens the next user turn, never a model turn. */
    const sl_chat_msg g1[] = {{"system", "  Be brief. "}, {"user", "Hi"}};
    check_render("gemma system", SL_CHAT_GEMMA, g1, 2, true,
                 "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n");
    const sl_chat_msg g2[] = {{"system", "S"}};
    check_render("gemma system only", SL_CHAT_GEMMA, g2, 1, true, "<start_of_turn>model\n");
    const sl_chat_msg g3[] = {{"system", "A"}, {"system", "B"}, {"assistant", "x"}, {"user", "u"}};
    check_render("gemma systems before model", SL_CHAT_GEMMA, g3, 4, false,
                 "<start_of_turn>model\nx<end_of_turn>\n<start_of_turn>user\nAB\n\nu<end_of_turn>\n");
    /* Llama 2 without <<SYS>>: system text on its own line in the first [INST]. */
    const sl_chat_msg l1[] = {{"system", "S"}, {"user", "U"}};
    check_render("llama2 system", SL_CHAT_LLAMA2, l1, 2, true, "[INST] S\nU [/INST]");
    check_render("llama2-sys system", SL_CHAT_LLAMA2_SYS, l1, 2, true,
                 "[INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST]");
    check_render("mistral-v7 system", SL_CHAT_MISTRAL_V7, l1, 2, true,
                 "[SYSTEM_PROMPT] S[/SYSTEM_PROMPT][INST] U[/INST]");
    check_render("chatml system", SL_CHAT_CHATML, l1, 2, true,
                 "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n");
    /* Llama 3 trims every message; ChatML keeps them as they are. */
    const sl_chat_msg spaced[] = {{"system", " \t S \n"}, {"user", "\n U "}};
    check_render("llama3 trims", SL_CHAT_LLAMA3, spaced, 2, false,
                 "<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
                 "<|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|>");
    check_render("chatml keeps", SL_CHAT_CHATML, spaced, 2, false,
                 "<|im_start|>system\n \t S \n<|im_end|>\n<|im_start|>user\n\n U <|im_end|>\n");
}

static void test_empty_conversation(void) {
    check_render("chatml empty", SL_CHAT_CHATML, NULL, 0, true, "<|im_start|>assistant\n");
    check_render("chatml empty, no opening", SL_CHAT_CHATML, NULL, 0, false, "");
    check_render("llama2 empty", SL_CHAT_LLAMA2, NULL, 0, true, "[INST] ");
    check_render("gemma empty", SL_CHAT_GEMMA, NULL, 0, true, "<start_of_turn>model\n");
}

static void test_names(void) {
    for (int t = SL_CHAT_UNKNOWN + 1; t < SL_CHAT_COUNT; t++) {
        const char *name = sl_chat_name((sl_chat_template)t);
        CHECKF(name && strcmp(name, "unknown") != 0, "family %d has no name", t);
        CHECKF((int)sl_chat_from_name(name) == t, "%s does not round-trip", name);
        CHECKF((int)sl_chat_detect(name) == t, "%s as template text", name);
    }
    CHECK(strcmp(sl_chat_name(SL_CHAT_UNKNOWN), "unknown") == 0);
    CHECK(strcmp(sl_chat_name(SL_CHAT_COUNT), "unknown") == 0);
    CHECK(strcmp(sl_chat_name((sl_chat_template)-3), "unknown") == 0);
    CHECK(sl_chat_from_name("unknown") == SL_CHAT_UNKNOWN);
    CHECK(sl_chat_from_name("ChatML") == SL_CHAT_UNKNOWN);
    CHECK(sl_chat_from_name("") == SL_CHAT_UNKNOWN);
    CHECK(sl_chat_from_name(NULL) == SL_CHAT_UNKNOWN);
    CHECK(sl_chat_from_name("llama3") == SL_CHAT_LLAMA3);
    CHECK(sl_chat_from_name("gemma") == SL_CHAT_GEMMA);
    CHECK(sl_chat_from_name("mistral-v3-tekken") == SL_CHAT_MISTRAL_V3_TEKKEN);
    CHECK(sl_chat_from_name("gpt-oss") == SL_CHAT_OPENAI_MOE);
}

static void test_errors(void) {
    const sl_chat_msg no_content[] = {{"user", NULL}};
    const sl_chat_msg no_role[] = {{NULL, "x"}};
    const sl_chat_msg empty_role[] = {{"", "x"}};
    const sl_chat_msg tool[] = {{"user", "x"}, {"tool", "y"}};
    check_fails("NULL content", SL_CHAT_CHATML, no_content, 1);
    check_fails("NULL role", SL_CHAT_CHATML, no_role, 1);
    check_fails("empty role", SL_CHAT_LLAMA3, empty_role, 1);
    check_fails("tool role in gemma", SL_CHAT_GEMMA, tool, 2);
    check_fails("tool role in llama2", SL_CHAT_LLAMA2_SYS, tool, 2);
    check_fails("tool role in mistral", SL_CHAT_MISTRAL_V7, tool, 2);
    check_fails("unknown family", SL_CHAT_UNKNOWN, standard_conversation, 1);
    check_fails("family out of range", SL_CHAT_COUNT, standard_conversation, 1);
    check_fails("messages missing", SL_CHAT_CHATML, NULL, 2);
    sl_error err;
    CHECK(sl_chat_apply(SL_CHAT_CHATML, standard_conversation, 1, true, NULL, &err) != 0);
    /* Families that write the role's name accept other roles; those with tool turns accept "tool". */
    check_render("chatml tool role", SL_CHAT_CHATML, tool, 2, false,
                 "<|im_start|>user\nx<|im_end|>\n<|im_start|>tool\ny<|im_end|>\n");
    check_render("exaone4 tool role", SL_CHAT_EXAONE4, tool, 2, false,
                 "[|user|]x\n[|tool|]y[|endofturn|]\n");
}

int main(void) {
    RUN(test_llama_cpp_vectors);
    RUN(test_detect_real_templates);
    RUN(test_render_more_families);
    RUN(test_add_assistant);
    RUN(test_system_messages);
    RUN(test_empty_conversation);
    RUN(test_names);
    RUN(test_errors);
    TEST_SUMMARY();
}
