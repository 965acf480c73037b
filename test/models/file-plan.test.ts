import { describe, expect, it } from 'vitest';
import { planFiles, type RepoFile } from '../../src/models/file-plan.js';

const file = (path: string): RepoFile => ({ type: 'file', path, size: 1 });

describe('planFiles', () => {
  it('GIVEN a repo with an upscaler/ beside the diffusers layout THEN its network and config are fetched (a U uses them), PyTorch weights are not', () => {
    const planned = planFiles('someone/model', [
      'model_index.json',
      'unet/model.onnx',
      'text_encoder/model.onnx',
      'upscaler/model.onnx',
      'upscaler/config.json',
      'upscaler/RealESRGAN_x2.pth',
    ].map(file));
    expect(planned.map((p) => p.localPath).sort()).toEqual(['model_index.json', 'text_encoder/model.onnx', 'unet/model.onnx', 'upscaler/config.json', 'upscaler/model.onnx']);
  });
});
