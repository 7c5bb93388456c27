//! Login lockout: failed admin logins are counted per (username, client address) and per
//! address within a window; past the limits the pair or the address is refused for a while.
//! Counted in memory, per process.

use super::error::ApiError;
use chrono::{NaiveDateTime, TimeDelta};
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;

/// Failures allowed per (username, client address) within the window before that pair locks.
pub const MAX_FAILURES: u32 = 5;
/// Failures allowed per client address, whatever the usernames, before the address locks.
pub const MAX_ADDRESS_FAILURES: u32 = 30;
/// Keys each throttling table keeps at most; past that the least recently used give way.
pub const TABLE_CAPACITY: usize = 10_000;
const WINDOW: TimeDelta = TimeDelta::minutes(15);

fn seconds(d: TimeDelta) -> u64 {
    u64::try_from(d.num_seconds()).unwrap_or(0).max(1)
}

/// One throttled key: recent failures, attempts being checked, lock.
#[derive(Default)]
struct Attempts {
    failures: VecDeque<NaiveDateTime>,
    in_flight: u32,
    locked_until: Option<NaiveDateTime>,
    last_used: NaiveDateTime,
}

impl Attempts {
    fn expire(&mut self, now: NaiveDateTime) {
        while self.failures.front().is_some_and(|t| *t <= now - WINDOW) {
            self.failures.pop_front();
        }
        if self.locked_until.is_some_and(|t| t <= now) {
            self.locked_until = None;
        }
    }

    fn is_idle(&self) -> bool {
        self.in_flight == 0 && self.failures.is_empty() && self.locked_until.is_none()
    }

    fn spent(&self) -> u32 {
        u32::try_from(self.failures.len())
            .unwrap_or(u32::MAX)
            .saturating_add(self.in_flight)
    }
}

/// Failure budgets per key, bounded: a new key past `capacity` evicts idle keys first, then
/// the least recently used, so a flood of new keys can neither grow memory nor stop recording.
struct Table<K> {
    budget: u32,
    capacity: usize,
    entries: HashMap<K, Attempts>,
}

impl<K: Eq + Hash + Clone> Table<K> {
    fn new(budget: u32, capacity: usize) -> Self {
        Self {
            budget,
            capacity,
            entries: HashMap::new(),
        }
    }

    fn entry(&mut self, key: &K, now: NaiveDateTime) -> &mut Attempts {
        if !self.entries.contains_key(key) && self.entries.len() >= self.capacity {
            self.make_room(now);
        }
        let attempts = self.entries.entry(key.clone()).or_default();
        attempts.expire(now);
        attempts.last_used = now;
        attempts
    }

    /// Forgets idle keys; if that is not enough, the least recently used quarter (keys with
    /// attempts being checked stay, so their outcome is counted). Batches keep a flood of new
    /// keys at an amortised constant cost each.
    fn make_room(&mut self, now: NaiveDateTime) {
        self.entries.retain(|_, a| {
            a.expire(now);
            !a.is_idle()
        });
        if self.entries.len() < self.capacity {
            return;
        }
        let mut ages: Vec<(NaiveDateTime, K)> = self
            .entries
            .iter()
            .filter(|(_, a)| a.in_flight == 0)
            .map(|(k, a)| (a.last_used, k.clone()))
            .collect();
        let evict = (self.entries.len() + 1)
            .saturating_sub(self.capacity * 3 / 4)
            .min(ages.len());
        if evict == 0 {
            return;
        }
        ages.select_nth_unstable_by_key(evict - 1, |(t, _)| *t);
        for (_, key) in ages.drain(..evict) {
            self.entries.remove(&key);
        }
    }

    /// Takes one attempt from the budget; `Err(retry_after)` while locked or while attempts
    /// being checked hold what is left of it.
    fn reserve(&mut self, key: &K, now: NaiveDateTime) -> Result<(), u64> {
        let budget = self.budget;
        let a = self.entry(key, now);
        if let Some(until) = a.locked_until {
            return Err(seconds(until - now));
        }
        if a.spent() >= budget {
            return Err(1);
        }
        a.in_flight += 1;
        Ok(())
    }

    /// Gives a reserved attempt back unspent.
    fn release(&mut self, key: &K) {
        if let Some(a) = self.entries.get_mut(key) {
            a.in_flight = a.in_flight.saturating_sub(1);
        }
    }

    /// Spends a reserved attempt as a failure: the chances left, or `Err(lock seconds)` when
    /// this failure used the last one.
    fn fail(&mut self, key: &K, now: NaiveDateTime) -> Result<u32, u64> {
        let budget = self.budget;
        let a = self.entry(key, now);
        a.in_flight = a.in_flight.saturating_sub(1);
        a.failures.push_back(now);
        let count = u32::try_from(a.failures.len()).unwrap_or(u32::MAX);
        if count >= budget {
            a.failures.clear();
            a.locked_until = Some(now + WINDOW);
            return Err(seconds(WINDOW));
        }
        Ok(budget - count)
    }

    /// Ends a reserved attempt as a success: the key's failures and lock are forgotten.
    fn succeed(&mut self, key: &K) {
        if let Some(a) = self.entries.get_mut(key) {
            a.in_flight = a.in_flight.saturating_sub(1);
            a.failures.clear();
            a.locked_until = None;
            if a.in_flight == 0 {
                self.entries.remove(key);
            }
        }
    }
}

struct Tables {
    /// Per (username, client address): 5 failures lock the pair for 15 minutes.
    pairs: Table<(String, IpAddr)>,
    /// Per client address, any username: a flood of names from one place locks that place.
    addresses: Table<IpAddr>,
}

/// Login throttling. An attempt is reserved before the password is checked (so concurrent
/// guesses cannot outrun the budget) and counted per (username, client address), so a
/// stranger cannot lock the admin out from elsewhere; each client address also has a budget
/// over all usernames. Both tables are bounded ([`TABLE_CAPACITY`]).
pub struct Lockout {
    tables: Mutex<Tables>,
}

impl Default for Lockout {
    fn default() -> Self {
        Self::with_capacity(TABLE_CAPACITY)
    }
}

impl Lockout {
    /// A lockout whose tables keep at most `capacity` keys each.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            tables: Mutex::new(Tables {
                pairs: Table::new(MAX_FAILURES, capacity),
                addresses: Table::new(MAX_ADDRESS_FAILURES, capacity),
            }),
        }
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves one login attempt of `username` from the client address `addr` (see
    /// `ClientAddr::throttle_key`) before its password is checked.
    ///
    /// # Errors
    /// 429 while the pair or the address is locked, or its remaining attempts are all being
    /// checked right now.
    pub fn reserve(
        &self,
        username: &str,
        addr: IpAddr,
        now: NaiveDateTime,
    ) -> Result<Attempt<'_>, ApiError> {
        let key = (username.to_string(), addr);
        let mut t = self.tables();
        t.addresses.reserve(&addr, now).map_err(ApiError::locked)?;
        if let Err(retry) = t.pairs.reserve(&key, now) {
            t.addresses.release(&addr);
            return Err(ApiError::locked(retry));
        }
        Ok(Attempt {
            lockout: self,
            key,
            settled: false,
        })
    }
}

/// A reserved login attempt; dropping it unsettled gives it back unspent.
pub struct Attempt<'a> {
    lockout: &'a Lockout,
    key: (String, IpAddr),
    settled: bool,
}

impl Attempt<'_> {
    /// Counts the attempt as a failure; the error to answer (401 with chances left, or 429).
    pub fn failed(mut self, now: NaiveDateTime) -> ApiError {
        self.settled = true;
        let mut t = self.lockout.tables();
        let address = t.addresses.fail(&self.key.1, now);
        let pair = t.pairs.fail(&self.key, now);
        match (pair, address) {
            (Err(retry), _) | (_, Err(retry)) => ApiError::locked(retry),
            (Ok(left), Ok(address_left)) => ApiError::login_failed(left.min(address_left)),
        }
    }

    /// Counts the attempt as a success: the pair's failures are forgotten.
    pub fn succeeded(mut self) {
        self.settled = true;
        let mut t = self.lockout.tables();
        t.addresses.release(&self.key.1);
        t.pairs.succeed(&self.key);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.settled {
            let mut t = self.lockout.tables();
            t.addresses.release(&self.key.1);
            t.pairs.release(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i64) -> NaiveDateTime {
        chrono::DateTime::from_timestamp(1_800_000_000, 0)
            .expect("time")
            .naive_utc()
            + TimeDelta::minutes(minute)
    }

    fn addr(n: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n))
    }

    fn status(e: &ApiError) -> u16 {
        e.status().as_u16()
    }

    #[test]
    fn reserved_attempts_hold_the_budget_until_settled() {
        let lockout = Lockout::default();
        let a = addr(1);
        let held: Vec<_> = (0..MAX_FAILURES)
            .map(|_| lockout.reserve("admin", a, at(0)).expect("within budget"))
            .collect();
        let refused = lockout
            .reserve("admin", a, at(0))
            .err()
            .expect("budget held");
        assert_eq!(status(&refused), 429);
        let mut answers: Vec<u16> = held.into_iter().map(|h| status(&h.failed(at(0)))).collect();
        answers.sort_unstable();
        assert_eq!(answers, [401, 401, 401, 401, 429]);
        assert!(lockout.reserve("admin", a, at(14)).is_err(), "locked");
        assert!(lockout.reserve("admin", a, at(16)).is_ok(), "lock over");
    }

    #[test]
    fn an_abandoned_attempt_is_given_back() {
        let lockout = Lockout::default();
        for _ in 0..10 {
            drop(lockout.reserve("admin", addr(1), at(0)).expect("reserved"));
        }
        let last = lockout.reserve("admin", addr(1), at(0)).expect("reserved");
        assert_eq!(status(&last.failed(at(0))), 401);
    }

    #[test]
    fn a_flood_of_usernames_neither_grows_the_table_nor_stops_admin_locking() {
        let lockout = Lockout::default();
        // Each flooding name from its own address, so only the pair table sees them.
        for n in 0..(2 * TABLE_CAPACITY as u32) {
            let attempt = lockout
                .reserve(&format!("user{n}"), addr(1000 + n), at(0))
                .expect("new names are recorded");
            let _ = attempt.failed(at(0));
        }
        {
            let t = lockout.tables();
            assert!(t.pairs.entries.len() <= TABLE_CAPACITY);
            assert!(t.addresses.entries.len() <= TABLE_CAPACITY);
        }
        let mut last = None;
        for _ in 0..MAX_FAILURES {
            let attempt = lockout.reserve("admin", addr(1), at(1)).expect("not yet");
            last = Some(status(&attempt.failed(at(1))));
        }
        assert_eq!(last, Some(429));
        assert!(
            lockout.reserve("admin", addr(1), at(1)).is_err(),
            "admin locks"
        );
        assert!(
            lockout.reserve("admin", addr(2), at(1)).is_ok(),
            "another address is not locked"
        );
    }

    #[test]
    fn one_address_cannot_spray_usernames_past_its_own_budget() {
        let lockout = Lockout::default();
        for n in 0..MAX_ADDRESS_FAILURES {
            let attempt = lockout
                .reserve(&format!("user{n}"), addr(1), at(0))
                .expect("within the address budget");
            let _ = attempt.failed(at(0));
        }
        assert!(lockout.reserve("someone-else", addr(1), at(0)).is_err());
        assert!(lockout.reserve("someone-else", addr(2), at(0)).is_ok());
    }

    #[test]
    fn success_forgets_the_pair() {
        let lockout = Lockout::default();
        for _ in 0..MAX_FAILURES - 1 {
            let _ = lockout
                .reserve("admin", addr(1), at(0))
                .expect("ok")
                .failed(at(0));
        }
        lockout
            .reserve("admin", addr(1), at(0))
            .expect("ok")
            .succeeded();
        let e = lockout
            .reserve("admin", addr(1), at(0))
            .expect("ok")
            .failed(at(0));
        assert_eq!(status(&e), 401);
        assert!(lockout.tables().pairs.entries.len() == 1);
    }
}
