// Chat templates from tokenizer_config.json rendered with @huggingface/jinja, compared with the strings
// transformers' apply_chat_template gives — written out here by reading each template by hand.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { JinjaChatTemplate } from '../src/tokenizer/index.js';
import { LLAMA3_DIR, QWEN3_DIR } from './tokenizer-files.js';

const templateOf = (dir: string) => {
  const path = join(dir, 'tokenizer_config.json');
  return JinjaChatTemplate.fromConfig(JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>, path)!;
};

const CHAT = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: ' Hi there \n' },
  { role: 'assistant', content: 'Hello!' },
];

describe('Llama 3 chat template', () => {
  const t = templateOf(LLAMA3_DIR);
  const header = (role: string) => `<|start_header_id|>${role}<|end_header_id|>\n\n`;

  it('puts bos_token before the first turn, trims contents, and always ends with the assistant header', () => {
    // This template (Meta-Llama-3's base tokenizer) appends the assistant header whatever add_generation_prompt says.
    const expected = `<|begin_of_text|>${header('system')}Be brief.<|eot_id|>${header('user')}Hi there<|eot_id|>${header('assistant')}Hello!<|eot_id|>${header('assistant')}`;
    expect(t.render(CHAT)).toBe(expected);
    expect(t.render(CHAT, { addGenerationPrompt: true })).toBe(expected);
    expect(t.render(CHAT.slice(1, 2))).toBe(`<|begin_of_text|>${header('user')}Hi there<|eot_id|>${header('assistant')}`);
  });
});

describe('Qwen3 chat template', () => {
  const t = templateOf(QWEN3_DIR);

  it('renders system, user and the last assistant turn with an empty think block', () => {
    expect(t.render(CHAT)).toBe(
      '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n Hi there \n<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nHello!<|im_end|>\n',
    );
  });

  it('adds the generation prompt on request, and the empty think block with enable_thinking=false', () => {
    const prompt = '<|im_start|>user\nHi<|im_end|>\n';
    expect(t.render([{ role: 'user', content: 'Hi' }])).toBe(prompt);
    expect(t.render([{ role: 'user', content: 'Hi' }], { addGenerationPrompt: true })).toBe(`${prompt}<|im_start|>assistant\n`);
    expect(t.render([{ role: 'user', content: 'Hi' }], { addGenerationPrompt: true, variables: { enable_thinking: false } })).toBe(
      `${prompt}<|im_start|>assistant\n<think>\n\n</think>\n\n`,
    );
  });

  it('drops the reasoning of assistant turns before the last user message', () => {
    const messages = [
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: '<think>\nhmm\n</think>\n\nHello!' },
      { role: 'user', content: 'Bye' },
      { role: 'assistant', content: 'Bye!' },
    ];
    expect(t.render(messages)).toBe(
      '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n' +
        '<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nBye!<|im_end|>\n',
    );
  });
});

describe('templates that fail', () => {
  it('turns raise_exception into E_TOKENIZER naming the file and the template\'s message', () => {
    const source = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation roles must start with user') }}{% endif %}{{ bos_token }}{% for m in messages %}{{ m['content'] + eos_token }}{% endfor %}";
    const t = JinjaChatTemplate.fromConfig({ chat_template: source, bos_token: '<s>', eos_token: { content: '</s>' } }, '/m/tokenizer_config.json')!;
    expect(t.render([{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }])).toBe('<s>a</s>b</s>');
    expect(() => t.render([{ role: 'assistant', content: 'b' }])).toThrow(
      expect.objectContaining({ code: 'E_TOKENIZER', field: 'chat_template', message: expect.stringMatching(/\/m\/tokenizer_config\.json.*Conversation roles must start with user/) }),
    );
  });

  it('refuses a template that does not parse when it is loaded, and picks "default" from a named list', () => {
    expect(() => JinjaChatTemplate.fromConfig({ chat_template: '{% for m in messages %}{{ m.content }' }, '/m/tokenizer_config.json')).toThrow(
      expect.objectContaining({ code: 'E_TOKENIZER', message: expect.stringContaining('does not parse') }),
    );
    const named = [{ name: 'tool_use', template: 'T' }, { name: 'default', template: 'D{{ messages | length }}' }];
    expect(JinjaChatTemplate.fromConfig({ chat_template: named }, 'x')!.render([{ role: 'user', content: '' }])).toBe('D1');
    expect(JinjaChatTemplate.fromConfig({}, 'x')).toBeUndefined();
  });
});
