import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
// The tokenizer engine of @huggingface/transformers v4 (its PreTrainedTokenizer wraps this class), used directly:
// importing all of transformers costs the bot about 140 MB of memory under tsx. Files are read here, from the
// model folder: nothing is ever fetched.
import { Tokenizer } from '@huggingface/tokenizers';

/** Which files a tokenizer was built from. */
export type TokenizerForm = 'tokenizer.json' | 'vocab.json+merges.txt';

export interface LoadTokenizerOptions {
  /**
   * Sequence length the text encoder takes (its `input_ids` dimension). Default: the tokenizer's
   * `model_max_length`, or 77 (CLIP) when that is missing or a placeholder.
   */
  maxLength?: number;
  /** Force one form (tests compare both). Default: tokenizer.json when present, else vocab.json + merges.txt. */
  form?: TokenizerForm;
}

export interface EncodedPrompt {
  /** Exactly `maxLength` ids: start token, prompt tokens, end token, then padding. */
  ids: number[];
  /** True when prompt tokens were dropped to fit. */
  truncated: boolean;
}

/** A CLIP tokenizer that pads and truncates the way diffusers calls it (padding="max_length", truncation=True). */
export class PromptTokenizer {
  constructor(
    private readonly tokenizer: Tokenizer,
    /** Ids per prompt, specials included. */
    readonly maxLength: number,
    readonly form: TokenizerForm,
    readonly padTokenId: number,
    readonly eosTokenId: number,
  ) {}

  /** The ids of `text` with start and end tokens, before padding or truncation. */
  rawIds(text: string): number[] {
    return this.tokenizer.encode(text).ids;
  }

  encode(text: string): EncodedPrompt {
    const raw = this.rawIds(text);
    const truncated = raw.length > this.maxLength;
    // As Python's CLIPTokenizer truncates: the end token stays last.
    const ids = truncated ? [...raw.slice(0, this.maxLength - 1), raw[raw.length - 1]] : raw;
    while (ids.length < this.maxLength) ids.push(this.padTokenId);
    return { ids, truncated };
  }
}

/**
 * Load the tokenizer in a model's tokenizer/ folder with Hugging Face's tokenizers engine, locally.
 *
 * Real Stable Diffusion repositories ship vocab.json + merges.txt + tokenizer_config.json +
 * special_tokens_map.json and no tokenizer.json, which transformers.js needs (transformers.js issue #422): then the
 * equivalent tokenizer.json is built in memory (see {@link buildClipTokenizerJson}).
 */
export function loadTokenizer(folder: string, options: LoadTokenizerOptions = {}): PromptTokenizer {
  const config = readTokenizerConfig(folder);
  const hasJson = existsSync(join(folder, 'tokenizer.json'));
  const form: TokenizerForm = options.form ?? (hasJson ? 'tokenizer.json' : 'vocab.json+merges.txt');
  let tokenizerJson: Record<string, unknown>;
  if (form === 'tokenizer.json') {
    if (!hasJson) throw new Error(`Expected ${join(folder, 'tokenizer.json')} to exist`);
    tokenizerJson = readJson(join(folder, 'tokenizer.json'));
  } else {
    const vocabPath = join(folder, 'vocab.json');
    const mergesPath = join(folder, 'merges.txt');
    for (const path of [vocabPath, mergesPath]) {
      if (!existsSync(path)) {
        throw new Error(`Expected a tokenizer in ${folder}: tokenizer.json, or vocab.json and merges.txt; ${path} is missing`);
      }
    }
    const vocab = readJson(vocabPath) as Record<string, number>;
    const merges = parseMerges(readFileSync(mergesPath, 'utf8'));
    tokenizerJson = buildClipTokenizerJson(vocab, merges, config);
  }
  const tokenizer = new Tokenizer(tokenizerJson, config);
  // model_max_length is 77 for CLIP; some configs carry a huge placeholder (1e30) meaning "unset".
  const configured = typeof config.model_max_length === 'number' && config.model_max_length < 1e6 ? config.model_max_length : 77;
  const maxLength = options.maxLength ?? configured;
  if (!Number.isInteger(maxLength) || maxLength < 3) {
    throw new Error(`Expected \`maxLength\` to be an integer of at least 3, got \`${maxLength}\``);
  }
  const eos = typeof config.eos_token === 'string' ? tokenizer.token_to_id(config.eos_token) : undefined;
  const pad = typeof config.pad_token === 'string' ? tokenizer.token_to_id(config.pad_token) : undefined;
  if (pad === undefined || eos === undefined) {
    throw new Error(`Expected ${folder} to define pad and end tokens found in its vocabulary, got \`${String(config.pad_token)}\` and \`${String(config.eos_token)}\``);
  }
  return new PromptTokenizer(tokenizer, maxLength, form, pad, eos);
}

/** tokenizer_config.json merged over special_tokens_map.json, with token objects reduced to their text. */
function readTokenizerConfig(folder: string): Record<string, unknown> {
  const configPath = join(folder, 'tokenizer_config.json');
  const mapPath = join(folder, 'special_tokens_map.json');
  const config: Record<string, unknown> = {
    ...(existsSync(mapPath) ? readJson(mapPath) : {}),
    ...(existsSync(configPath) ? readJson(configPath) : {}),
  };
  for (const [key, value] of Object.entries(config)) {
    if (key.endsWith('_token') && value && typeof value === 'object' && 'content' in value) {
      config[key] = (value as { content: string }).content;
    }
  }
  // CLIP's tokenizers pad with the end token unless told otherwise (SD 2.x says "!").
  config.pad_token ??= config.eos_token;
  return config;
}

function parseMerges(text: string): string[] {
  return text
    .split('\n')
    .filter((line, i) => line.length > 0 && !(i === 0 && line.startsWith('#version')));
}

/**
 * The tokenizer.json that HF tokenizers' CLIPTokenizerFast writes (as in openai/clip-vit-base-patch32), built from
 * the slow tokenizer's files: NFC, whitespace collapse and lowercase; CLIP's split pattern; byte-level BPE with the
 * `</w>` end-of-word suffix; start and end tokens around the sequence.
 */
export function buildClipTokenizerJson(
  vocab: Record<string, number>,
  merges: string[],
  config: Record<string, unknown>,
): Record<string, unknown> {
  const bos = String(config.bos_token ?? '<|startoftext|>');
  const eos = String(config.eos_token ?? '<|endoftext|>');
  const unk = String(config.unk_token ?? eos);
  const idOf = (token: string): number => {
    const id = vocab[token];
    if (id === undefined) throw new Error(`Expected the token \`${token}\` in vocab.json`);
    return id;
  };
  const special = [...new Set([bos, eos, unk])].map((content) => ({
    id: idOf(content),
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: true,
    special: true,
  }));
  const escape = (s: string) => s.replace(/[|\\{}()[\]^$+*?.]/g, '\\$&');
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: special,
    normalizer: {
      type: 'Sequence',
      normalizers: [{ type: 'NFC' }, { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'Lowercase' }],
    },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        {
          type: 'Split',
          pattern: {
            Regex: `${escape(bos)}|${escape(eos)}|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+`,
          },
          behavior: 'Removed',
          invert: true,
        },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: {
      type: 'RobertaProcessing',
      sep: [eos, idOf(eos)],
      cls: [bos, idOf(bos)],
      trim_offsets: false,
      add_prefix_space: false,
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: unk,
      continuing_subword_prefix: '',
      end_of_word_suffix: '</w>',
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  };
}

function readJson(path: string): Record<string, unknown> {
  return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
}
