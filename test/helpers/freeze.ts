/**
 * Freezing a test server (SIGSTOP) so that it accepts connections and answers nothing.
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';

/**
 * SIGSTOP `child` and wait until every one of its threads is stopped. The signal is delivered
 * asynchronously: a thread running on another core goes on for a few ms (seen: an LDAP bind
 * answered 2-7 ms after kill() returned, on a busy machine), so a test that freezes a server must
 * wait for it. Linux /proc; elsewhere a short pause.
 */
export async function freezeProcess(child: ChildProcess | null): Promise<void> {
  const pid = child?.pid;
  if (!child || pid === undefined || !child.kill('SIGSTOP')) return;
  const deadline = Date.now() + 2000;
  for (;;) {
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${pid}/task`);
    } catch {
      await new Promise((r) => setTimeout(r, 20));
      return;
    }
    const running = tasks.some((t) => {
      try {
        const stat = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
        const state = stat.charAt(stat.lastIndexOf(')') + 2);
        return state !== 'T' && state !== 't';
      } catch {
        return false; // the thread is gone
      }
    });
    if (!running || Date.now() > deadline) return;
    await new Promise((r) => setTimeout(r, 1));
  }
}
