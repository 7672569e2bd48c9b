import { execa } from 'execa';

/** Runs several `ip` commands in one process (`ip -batch`), optionally inside a netns. */
export async function ipBatch(commands: string[], netns?: string): Promise<void> {
  const args = netns ? ['-n', netns, '-batch', '-'] : ['-batch', '-'];
  await execa('ip', args, { input: commands.join('\n') + '\n' });
}

export async function listNetns(): Promise<string[]> {
  const { stdout } = await execa('ip', ['netns', 'list']);
  return stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter(Boolean);
}

export async function listLinks(prefix: string): Promise<string[]> {
  const { stdout } = await execa('ip', ['-o', 'link', 'show']);
  return stdout
    .split('\n')
    .map((l) => /^\d+:\s+([^:@]+)/.exec(l)?.[1] ?? '')
    .filter((name) => name.startsWith(prefix));
}
