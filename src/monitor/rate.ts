/**
 * A campaign's send rate as an exponentially weighted recent rate: the sends of each past
 * second, weighted by e^(−age/τ), over the weights of the seconds since the first send (at most
 * a minute back). From its first second it says what the campaign does now: no empty minute
 * before the start waters it down, and a burst that ended long ago weighs little.
 */
export const RATE_TAU_SECONDS = 10;
export const RATE_HORIZON_SECONDS = 60;

/**
 * `perSecond[age]` is the number of sends `age` whole seconds ago (0: the current second);
 * `sinceFirstSeconds` how long ago the first one was. Answers sends per minute.
 */
export function ewmaRatePerMinute(
  perSecond: ReadonlyMap<number, number>,
  sinceFirstSeconds: number,
  tauSeconds = RATE_TAU_SECONDS,
): number {
  const span = Math.max(1, Math.min(RATE_HORIZON_SECONDS, Math.ceil(sinceFirstSeconds)));
  let weighted = 0;
  let weights = 0;
  for (let age = 0; age < span; age++) {
    const weight = Math.exp(-age / tauSeconds);
    weights += weight;
    weighted += (perSecond.get(age) ?? 0) * weight;
  }
  return weights > 0 ? (weighted / weights) * 60 : 0;
}
