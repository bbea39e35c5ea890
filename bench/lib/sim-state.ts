/**
 * An in-memory StateStore for the in-process simulations. The gateway's own FileStateStore
 * persists every change with an fsync'd atomic rename, which is right for a gateway and far too
 * slow for registering 9,000 users' office networks in a simulation; the throttle reads only
 * `knownNetworks` from it. Bounded like the real store (50 networks per user, most recent last).
 */
import type { AppPasswordRecord, PasskeyRecord, StateStore, TotpRecord } from '../../src/store/ports.js';

const MAX_KNOWN_NETWORKS = 50;

export class SimStateStore implements StateStore {
  private readonly networks = new Map<string, string[]>();
  private readonly totp = new Map<string, TotpRecord>();
  private readonly recovery = new Map<string, string[]>();
  private readonly appPasswords = new Map<string, AppPasswordRecord[]>();
  private lockdown: { on: boolean; since: number; by: string } | null = null;

  async getTotp(user: string): Promise<TotpRecord | null> {
    return this.totp.get(user) ?? null;
  }
  async setTotp(user: string, rec: TotpRecord | null): Promise<void> {
    if (rec) this.totp.set(user, rec);
    else this.totp.delete(user);
  }
  async setRecoveryCodes(user: string, hashes: string[]): Promise<void> {
    this.recovery.set(user, [...hashes]);
  }
  async consumeRecoveryCode(user: string, hash: string): Promise<boolean> {
    const list = this.recovery.get(user) ?? [];
    const i = list.indexOf(hash);
    if (i < 0) return false;
    list.splice(i, 1);
    return true;
  }
  async countRecoveryCodes(user: string): Promise<number> {
    return this.recovery.get(user)?.length ?? 0;
  }
  async listAppPasswords(user: string): Promise<AppPasswordRecord[]> {
    return [...(this.appPasswords.get(user) ?? [])];
  }
  async addAppPassword(user: string, rec: AppPasswordRecord): Promise<void> {
    this.appPasswords.set(user, [...(this.appPasswords.get(user) ?? []), rec]);
  }
  async revokeAppPassword(user: string, label: string): Promise<boolean> {
    const list = this.appPasswords.get(user) ?? [];
    const next = list.filter((r) => r.label !== label);
    this.appPasswords.set(user, next);
    return next.length !== list.length;
  }
  // passkeys: not simulated (the simulations sign in with passwords and codes)
  async listPasskeys(_user: string): Promise<PasskeyRecord[]> {
    return [];
  }
  async addPasskey(_user: string, _rec: PasskeyRecord, _max: number): Promise<boolean> {
    return false;
  }
  async usePasskey(_user: string, _id: string, _counter: number, _now: number): Promise<'ok' | 'cloned' | 'gone'> {
    return 'gone';
  }
  async renamePasskey(_user: string, _id: string, _name: string): Promise<boolean> {
    return false;
  }
  async removePasskey(_user: string, _id: string): Promise<boolean> {
    return false;
  }
  async passkeyOwner(_id: string): Promise<string | null> {
    return null;
  }
  async knownNetworks(user: string): Promise<string[]> {
    return this.networks.get(user) ?? [];
  }
  async addKnownNetwork(user: string, key: string): Promise<boolean> {
    const list = (this.networks.get(user) ?? []).filter((k) => k !== key);
    const added = list.length === (this.networks.get(user)?.length ?? 0);
    list.push(key);
    this.networks.set(user, list.slice(-MAX_KNOWN_NETWORKS));
    return added;
  }
  async getLockdown(): Promise<{ on: boolean; since: number; by: string } | null> {
    return this.lockdown;
  }
  async setLockdown(state: { on: boolean; since: number; by: string }): Promise<void> {
    this.lockdown = { ...state };
  }
  async forgetUser(user: string): Promise<void> {
    this.networks.delete(user);
    this.totp.delete(user);
    this.recovery.delete(user);
    this.appPasswords.delete(user);
  }
}
