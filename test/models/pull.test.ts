import { existsSync, statSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadModel } from '../../src/diffusion/model.js';
import { generate } from '../../src/diffusion/pipeline.js';
import { describeModel, listModels } from '../../src/models/library.js';
import { ModelsError } from '../../src/models/models-error.js';
import { pullModel, type PullOptions } from '../../src/models/pull.js';
import { startHubStandIn, type HubStandIn } from '../../tools/hub-stand-in/server.js';
import { BIG, BIG_BYTES, BIG_FILE, GATED, GRANTED_TOKEN, LCM_TINY, NESTED, PYTORCH_ONLY, REVOKED_TOKEN, SD_TINY, SDXL_TINY, testRepos } from './hub-repos.js';

// `pull` against the Hub stand-in on 127.0.0.1 (tools/hub-stand-in): the real @huggingface/hub client and the
// real downloads, never the network.

let hub: HubStandIn;
let modelsDir: string;

beforeAll(async () => {
  hub = await startHubStandIn({ repos: testRepos(), grantedTokens: [GRANTED_TOKEN], invalidTokens: [REVOKED_TOKEN] });
});

afterAll(async () => {
  await hub?.close();
});

beforeEach(() => {
  modelsDir = mkdtempSync(join(tmpdir(), 'imagine-models-'));
  hub.requests.length = 0;
  hub.bytesServed.clear();
  return () => rmSync(modelsDir, { recursive: true, force: true });
});

const pull = (repo: string, extra: Partial<PullOptions> = {}) => pullModel({ repo, modelsDir, hubUrl: hub.url, ...extra });

async function failure(promise: Promise<unknown>): Promise<ModelsError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ModelsError);
  expect((error as Error).message).not.toContain('\n');
  return error as ModelsError;
}

const files = (dir: string) =>
  readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name).slice(dir.length + 1))
    .sort();

describe('pull from the Hub (stand-in)', () => {
  it('GIVEN sd-tiny on the Hub THEN only the ONNX layout arrives, the real loader loads it and it makes a picture', async () => {
    const result = await pull(SD_TINY);
    expect(result.name).toBe('sd-tiny');
    expect(result.dir).toBe(join(modelsDir, 'sd-tiny'));
    expect(files(result.dir)).toEqual([
      'feature_extractor/preprocessor_config.json',
      'model_index.json',
      'scheduler/scheduler_config.json',
      'source.json',
      'text_encoder/config.json',
      'text_encoder/model.onnx',
      'tokenizer/merges.txt',
      'tokenizer/special_tokens_map.json',
      'tokenizer/tokenizer_config.json',
      'tokenizer/vocab.json',
      'unet/config.json',
      'unet/model.onnx',
      'vae_decoder/config.json',
      'vae_decoder/model.onnx',
      'vae_encoder/model.onnx',
    ]);
    // The PyTorch weights beside the export were never asked for.
    expect(hub.requests.filter((line) => /safetensors|gitattributes/.test(line))).toEqual([]);
    expect(readdirSync(modelsDir)).toEqual(['sd-tiny']);
    const source = JSON.parse(readFileSync(join(result.dir, 'source.json'), 'utf8'));
    expect(source).toMatchObject({ repo: SD_TINY, revision: 'main', commit: result.commit });
    expect(Date.parse(source.pulledAt)).toBeGreaterThan(0);

    const model = await loadModel(result.dir, { intraOpNumThreads: 1, log: () => {} });
    try {
      const out = await generate(model, { prompt: 'a red circle', seed: 1, steps: 2, guidanceScale: 7.5 }, { previewEvery: 0 });
      const meta = await sharp(out.images[0]).metadata();
      expect(meta.format).toBe('png');
      expect(meta.width).toBe(model.info.width);
      // The encoder came along, so the pulled model can start from a picture (img2img).
      expect(model.vaeEncoder).toBeDefined();
    } finally {
      await model.release();
    }
  });

  it('GIVEN an SDXL repo (sdxl-turbo’s layout) THEN text_encoder_2/ and tokenizer_2/ arrive too, no PyTorch weights, and it makes a picture as SDXL', async () => {
    const result = await pull(SDXL_TINY);
    const got = files(result.dir);
    expect(got.filter((file) => /^(text_encoder_2|tokenizer_2)\//.test(file))).toEqual([
      'text_encoder_2/config.json',
      'text_encoder_2/model.onnx',
      'tokenizer_2/merges.txt',
      'tokenizer_2/special_tokens_map.json',
      'tokenizer_2/tokenizer_config.json',
      'tokenizer_2/vocab.json',
    ]);
    expect(got.filter((file) => /safetensors|^vae\//.test(file))).toEqual([]);
    expect(hub.requests.filter((line) => /safetensors|\/vae\//.test(line))).toEqual([]);
    expect(describeModel(result.dir, result.name)).toMatchObject({ kind: 'SDXL' });
    expect(describeModel(result.dir, result.name).unsupported).toBeUndefined();

    const model = await loadModel(result.dir, { intraOpNumThreads: 1, log: () => {} });
    try {
      expect(model.sdxl?.textEncoder2.textEmbeds?.name).toBe('text_embeds');
      const out = await generate(model, { prompt: 'a red circle', seed: 1, steps: 2, guidanceScale: 5, width: 64, height: 64 }, { previewEvery: 0 });
      expect(await sharp(out.images[0]).metadata()).toMatchObject({ format: 'png', width: 64, height: 64 });
    } finally {
      await model.release();
    }
  });

  it('GIVEN a connection cut in the middle of a large file THEN nothing is taken for a model, and the second run fetches only the rest', async () => {
    const cut = 3_000_000;
    hub.cutAfter(BIG, BIG_FILE, cut);
    const first = await failure(pull(BIG));
    expect(first.message).toMatch(/^the download of unet\/model\.onnx_data was cut \(.+\); run the same command again to resume/);
    expect(existsSync(join(modelsDir, 'sd-tiny-big'))).toBe(false);
    expect(listModels(modelsDir)).toEqual([]);
    expect(readdirSync(modelsDir)).toEqual(['.sd-tiny-big.partial']);
    const key = `${BIG}/${BIG_FILE}`;
    const servedFirst = hub.bytesServed.get(key)!;
    expect(servedFirst).toBeLessThanOrEqual(cut + 1); // the 1-byte probe and the cut body
    // What the client kept: a socket reset may drop the last bytes it had not read yet (a busy machine), so the
    // resume is measured against the partial file on disk, not against the bytes the server wrote.
    const kept = statSync(join(modelsDir, '.sd-tiny-big.partial', `${BIG_FILE}.part`)).size;
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThanOrEqual(cut);

    hub.bytesServed.clear();
    const progress: number[] = [];
    const second = await pull(BIG, { onProgress: (p) => progress.push(p.bytesDone) });
    const servedSecond = hub.bytesServed.get(key)!;
    // Only the rest (and the probe's byte): the part kept on disk was not fetched again.
    expect(servedSecond).toBeGreaterThanOrEqual(BIG_BYTES - kept);
    expect(servedSecond).toBeLessThanOrEqual(BIG_BYTES - kept + 1);
    expect(second.bytesFetched).toBeLessThan(second.bytes - kept + 1000);
    expect(readFileSync(join(second.dir, BIG_FILE)).length).toBe(BIG_BYTES);
    expect(readdirSync(modelsDir)).toEqual(['sd-tiny-big']);
    expect(Math.max(...progress)).toBe(second.bytes);
  });

  it('GIVEN a server that ignores the Range of a resume THEN the file starts again from its first byte and comes out whole', async () => {
    hub.cutAfter(LCM_TINY, 'text_encoder/model.onnx', 50_000);
    await failure(pull(LCM_TINY));
    hub.ignoreResumeRanges(LCM_TINY, 'text_encoder/model.onnx');
    hub.bytesServed.clear();
    const result = await pull(LCM_TINY);
    const size = readFileSync(join(result.dir, 'text_encoder', 'model.onnx')).length;
    expect(hub.bytesServed.get(`${LCM_TINY}/text_encoder/model.onnx`)).toBe(size + 1); // the whole file, and the probe's byte
    const model = await loadModel(result.dir, { intraOpNumThreads: 1, log: () => {} });
    await model.release();
    expect(readdirSync(modelsDir)).toEqual(['lcm-tiny']);
  });

  it('GIVEN the Hub failing for a moment (503) in the middle THEN the files so far are kept and the next run resumes', async () => {
    hub.failNext(SD_TINY, 'unet/model.onnx', 503);
    const error = await failure(pull(SD_TINY));
    expect(error.message).toMatch(/^the download of unet\/model\.onnx was cut \(HTTP 503\); run the same command again to resume/);
    expect(readdirSync(modelsDir)).toEqual(['.sd-tiny.partial']);
    hub.bytesServed.clear();
    await pull(SD_TINY);
    // Files finished before the failure were not fetched again.
    expect(hub.bytesServed.get(`${SD_TINY}/text_encoder/model.onnx`)).toBeUndefined();
    expect(readdirSync(modelsDir)).toEqual(['sd-tiny']);
  });

  it('GIVEN too little disk space for what is left to fetch THEN it is refused before any download', async () => {
    const error = await failure(pull(BIG, { freeBytes: async () => 1_000_000 }));
    expect(error.message).toMatch(/^`imagine-test\/sd-tiny-big` needs 8\.\d\d MB more and .+ has 1\.00 MB free; make room and run this again$/);
    expect(hub.requests.filter((line) => line.includes('/resolve/'))).toEqual([]);
    expect(readdirSync(modelsDir)).toEqual([]);
  });

  it('GIVEN a file that arrives corrupted THEN it is refused by its sha256 and nothing is left in MODELS_DIR', async () => {
    const repair = hub.corrupt(LCM_TINY, 'unet/model.onnx');
    try {
      const error = await failure(pull(LCM_TINY));
      expect(error.message).toMatch(/^unet\/model\.onnx: checksum mismatch \(expected sha256 [0-9a-f]{12}…, got [0-9a-f]{12}…\): the download was corrupted; nothing was kept/);
      expect(error.exitCode).toBe(1);
      expect(readdirSync(modelsDir)).toEqual([]);
    } finally {
      repair();
    }
  });

  it('GIVEN a repo that does not exist THEN one line says so, with and without a token', async () => {
    expect((await failure(pull('nobody/nothing'))).message).toBe('no model repo `nobody/nothing` on the Hub (or it is private: set HF_TOKEN)');
    expect((await failure(pull('nobody/nothing', { accessToken: GRANTED_TOKEN }))).message).toBe(
      'no model repo `nobody/nothing` on the Hub (or it is private: set HF_TOKEN)',
    );
    expect(readdirSync(modelsDir)).toEqual([]);
  });

  it('GIVEN a repo with PyTorch weights only THEN it is refused before any download, naming optimum-cli', async () => {
    const error = await failure(pull(PYTORCH_ONLY));
    expect(error.message).toBe(
      '`imagine-test/pytorch-only` has PyTorch/safetensors weights only (no unet/model.onnx); nothing was downloaded. ' +
        'Convert it first with `optimum-cli export onnx --model imagine-test/pytorch-only <dir>` and put <dir> in the models folder',
    );
    expect(hub.requests.filter((line) => line.includes('/resolve/') || line.includes('/cdn/'))).toEqual([]);
    expect(readdirSync(modelsDir)).toEqual([]);
  });

  it('GIVEN a gated repo THEN without a token one line says to set HF_TOKEN and accept the licence, before any download', async () => {
    const error = await failure(pull(GATED));
    expect(error.message).toBe(
      `\`${GATED}\` is gated: accept its licence at ${hub.url}/${GATED}, then set HF_TOKEN to a token of that account (https://huggingface.co/settings/tokens)`,
    );
    expect(hub.requests.filter((line) => line.includes('/resolve/'))).toEqual([]);
    expect(readdirSync(modelsDir)).toEqual([]);
  });

  it('GIVEN a gated repo and a token not granted access THEN one line says to accept the licence, nothing kept', async () => {
    const error = await failure(pull(GATED, { accessToken: 'hf_notgranted' }));
    expect(error.message).toBe(`HF_TOKEN has no access to the gated repo \`${GATED}\`: accept its licence at ${hub.url}/${GATED} with that account, then run this again`);
    expect(readdirSync(modelsDir)).toEqual([]);
  });

  it('GIVEN a gated repo and a granted HF_TOKEN THEN it is pulled, the token sent to the Hub', async () => {
    const result = await pull(GATED, { accessToken: GRANTED_TOKEN });
    expect(existsSync(join(result.dir, 'unet', 'model.onnx'))).toBe(true);
    const resolves = hub.requests.filter((line) => line.includes('/resolve/'));
    expect(resolves.length).toBeGreaterThan(0);
    expect(resolves.every((line) => line.endsWith('[auth]'))).toBe(true);
    // The CDN a redirect points to gets a signed URL, never the token.
    expect(hub.requests.filter((line) => line.includes('/cdn/') && line.endsWith('[auth]'))).toEqual([]);
  });

  it('GIVEN a revoked HF_TOKEN THEN one line says the Hub refused it', async () => {
    expect((await failure(pull(SD_TINY, { accessToken: REVOKED_TOKEN }))).message).toBe(
      'the Hub refused HF_TOKEN (invalid, expired or revoked): make a new one at https://huggingface.co/settings/tokens',
    );
    expect(readdirSync(modelsDir)).toEqual([]);
  });

  it('GIVEN a pull of the same name already running THEN a second one is refused and leaves the first alone', async () => {
    const lock = join(modelsDir, '.sd-tiny.lock');
    writeFileSync(lock, String(process.ppid));
    expect((await failure(pull(SD_TINY))).message).toBe(
      `another pull of \`sd-tiny\` is running (process ${process.ppid}); wait for it, or stop it and run this again`,
    );
    expect(existsSync(lock)).toBe(true);
    // A lock left by a process that is gone is taken over.
    writeFileSync(lock, '999999999');
    await pull(SD_TINY);
    expect(readdirSync(modelsDir)).toEqual(['sd-tiny']);
  });

  it('GIVEN a repo keeping the export in a subfolder THEN --subfolder pulls it, and without it the error names the subfolder', async () => {
    expect((await failure(pull(NESTED))).message).toBe(
      '`imagine-test/nested` is not a diffusers model (no model_index.json): it has one in `onnx`, pull with --subfolder onnx',
    );
    const result = await pull(NESTED, { subfolder: 'onnx', name: 'nested-sd' });
    expect(result.dir).toBe(join(modelsDir, 'nested-sd'));
    expect(existsSync(join(result.dir, 'unet', 'model.onnx'))).toBe(true);
    expect(JSON.parse(readFileSync(join(result.dir, 'source.json'), 'utf8'))).toMatchObject({ repo: NESTED, subfolder: 'onnx' });
  });

  it('GIVEN a revision THEN a commit id pulls that commit and an unknown one is refused in one line', async () => {
    const first = await pull(SD_TINY);
    const pinned = await pull(SD_TINY, { revision: first.commit, name: 'pinned' });
    expect(pinned.commit).toBe(first.commit);
    expect((await failure(pull(SD_TINY, { revision: 'v9', name: 'other' }))).message).toBe('no revision `v9` in `imagine-test/sd-tiny` on the Hub');
  });

  it('GIVEN a model of that name already in MODELS_DIR THEN it is refused and left alone', async () => {
    await pull(SD_TINY);
    const error = await failure(pull(SD_TINY));
    expect(error.message).toMatch(/^a model named `sd-tiny` is already in .+ \(remove it with `npm run models -- remove sd-tiny`, or pick another --name\)$/);
    expect(listModels(modelsDir).map((m) => m.name)).toEqual(['sd-tiny']);
  });

  it('GIVEN bad arguments THEN they are usage errors (exit code 2) before the Hub is asked', async () => {
    expect((await failure(pull('not-a-repo'))).exitCode).toBe(2);
    expect((await failure(pull(SD_TINY, { name: '.hidden' }))).exitCode).toBe(2);
    expect((await failure(pull(SD_TINY, { subfolder: '../x' }))).exitCode).toBe(2);
    expect(hub.requests).toEqual([]);
  });

  it('GIVEN no Hub at HF_ENDPOINT THEN one line says it could not be reached', async () => {
    const closed = await startHubStandIn({ repos: {} });
    await closed.close();
    const error = await failure(pullModel({ repo: SD_TINY, modelsDir, hubUrl: closed.url }));
    expect(error.message).toBe(`could not reach the Hub at ${closed.url}: ECONNREFUSED`);
    expect(readdirSync(modelsDir)).toEqual([]);
  });
});
