/** Child-process entry of one bench section (see child.ts): `section-main.ts <section> <input.json> <output.json>`. */
import { readFileSync, writeFileSync } from 'node:fs';
import type { SectionName } from './child.js';

async function main(): Promise<void> {
  const [section, inputFile, outputFile] = process.argv.slice(2) as [SectionName, string, string];
  const input = JSON.parse(readFileSync(inputFile, 'utf8'));
  const log = (line: string) => process.stderr.write(`${line}\n`);
  let output: unknown;
  switch (section) {
    case 'model': {
      const { measureModel } = await import('./model-section.js');
      output = await measureModel(input, log);
      break;
    }
    case 'levers': {
      const { measureLevers } = await import('./levers-section.js');
      output = await measureLevers(input, log);
      break;
    }
    case 'bare-unet': {
      const { measureBareUnet } = await import('./levers-section.js');
      output = await measureBareUnet(input.modelDir, input.threads, input.calls);
      break;
    }
    case 'fp16': {
      const { measureFp16 } = await import('./levers-section.js');
      output = await measureFp16(input.float32Dir, input.float16Dir, input.cells, input.calls, input.rounds);
      break;
    }
    case 'cached-startup': {
      const { measureCachedStartup } = await import('./levers-section.js');
      output = await measureCachedStartup(input.modelDir, input.rounds);
      break;
    }
    case 'bot': {
      const { measureBot } = await import('./bot-section.js');
      output = await measureBot(input, log);
      break;
    }
    case 'loop-levers': {
      const { measureLoopLevers } = await import('./loop-levers-section.js');
      output = await measureLoopLevers(input, log);
      break;
    }
    case 'bot-process': {
      const { measureBotProcess } = await import('./bot-section.js');
      output = await measureBotProcess(input, log);
      break;
    }
    case 'scale': {
      const { measureScale } = await import('./scale-section.js');
      output = await measureScale(input, log);
      break;
    }
    default:
      throw new Error(`Expected a section from model, levers, bare-unet, bot, bot-process, loop-levers, fp16, scale, cached-startup, got \`${String(section)}\``);
  }
  writeFileSync(outputFile, JSON.stringify(output));
  // Worker threads, sockets or native pools left behind must not keep the bench waiting.
  process.exit(0);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
