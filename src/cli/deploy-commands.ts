/**
 * `npm run deploy-commands [-- --guild ID]`: registers the slash commands. Globally by default (every server,
 * may take a while to show up); with `--guild ID` in one server only, at once (for development).
 */
import { REST, Routes, type RESTGetAPIOAuth2CurrentApplicationResult } from 'discord.js';
import { ConfigError, loadConfig } from '../config.js';
import { COMMANDS } from '../../commands/index.js';

/** Parses `--guild ID` (or `--guild=ID`); anything else is an error. */
export function parseDeployArgs(argv: readonly string[]): { guildId?: string } {
  let guildId: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--guild' || arg.startsWith('--guild=')) {
      const value = arg === '--guild' ? argv[++i] : arg.slice('--guild='.length);
      if (value === undefined || !/^\d{17,20}$/.test(value)) {
        throw new ConfigError(`Expected \`--guild\` to be a server id (17 to 20 digits), got \`${value ?? ''}\``);
      }
      guildId = value;
    } else {
      throw new ConfigError(`Unknown argument \`${arg}\`; usage: npm run deploy-commands [-- --guild ID]`);
    }
  }
  return { guildId };
}

async function main(): Promise<void> {
  const { guildId } = parseDeployArgs(process.argv.slice(2));
  const config = loadConfig();
  if (config.discordToken === undefined) {
    throw new ConfigError('DISCORD_TOKEN is missing: put your bot token in .env (see .env.example). The playground (`npm start` with no token) registers its commands itself');
  }
  const rest = new REST(config.discordApiUrl ? { api: config.discordApiUrl } : {}).setToken(config.discordToken);
  const application = (await rest.get(Routes.currentApplication())) as RESTGetAPIOAuth2CurrentApplicationResult;
  const body = [...COMMANDS.values()].map((command) => command.data);
  const route = guildId ? Routes.applicationGuildCommands(application.id, guildId) : Routes.applicationCommands(application.id);
  const registered = (await rest.put(route, { body })) as { name: string }[];
  const names = registered.map((command) => `/${command.name}`).join(', ');
  process.stdout.write(
    guildId
      ? `Registered ${registered.length} commands in server ${guildId}: ${names}\n`
      : `Registered ${registered.length} commands globally: ${names} (new servers may take up to an hour to see changes)\n`,
  );
}

main().catch((error: unknown) => {
  const message = error instanceof ConfigError ? error.message : error instanceof Error ? error.message : String(error);
  process.stderr.write(`deploy-commands: ${message}\n`);
  process.exit(1);
});
