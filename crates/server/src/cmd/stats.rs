//! `stats [group]` and binary Stat: each group as (name, value) pairs
//! (`crate::stats`), which the session renders; `reset`; `cachedump`.

use memcrab_proto::StatsGroup;
use memcrab_store::DumpEntry;

use super::Ctx;
use crate::stats::{self as snapshot, Stat};

/// The most output `stats cachedump` gives (memcached's 2 MB).
const CACHEDUMP_MAX_BYTES: usize = 2 << 20;

/// What a stats request answers.
#[derive(Debug)]
pub enum Reply {
    /// A group's statistics.
    Pairs(Vec<Stat>),
    /// `stats reset` done.
    Reset,
    /// `stats cachedump`: the keys of a class, most recent first.
    Dump(Vec<DumpEntry>),
    /// `stats cachedump` with `-X`.
    DumpDisabled,
    /// `stats detail` with a wrong or missing argument.
    DetailUsage,
    /// `stats detail on` or `off` done.
    DetailSet,
    /// `stats detail dump`: `PREFIX` lines and `END`, as text.
    DetailDump(Vec<u8>),
    /// A group this protocol does not serve (binary `Stat` with a key
    /// memcached does not know).
    Unknown,
}

/// Runs a stats request for `group` (`None`: a key that names none).
pub fn stats(cx: &Ctx<'_>, group: Option<StatsGroup>) -> Reply {
    let sh = cx.sh;
    let Some(group) = group else {
        return Reply::Unknown;
    };
    match group {
        StatsGroup::General => Reply::Pairs(snapshot::general(sh)),
        StatsGroup::Settings => Reply::Pairs(snapshot::settings(sh)),
        StatsGroup::Items => Reply::Pairs(snapshot::items(sh)),
        StatsGroup::Slabs => Reply::Pairs(snapshot::slabs(sh)),
        StatsGroup::Sizes => Reply::Pairs(snapshot::sizes()),
        StatsGroup::Conns => Reply::Pairs(snapshot::conns(sh)),
        StatsGroup::Memcrab => Reply::Pairs(snapshot::memcrab(sh)),
        StatsGroup::HotKeys => Reply::Pairs(snapshot::hotkeys(sh)),
        StatsGroup::Reset => {
            sh.reset_stats();
            Reply::Reset
        }
        StatsGroup::CacheDump { class, limit } => {
            if !sh.settings.dump_enabled {
                return Reply::DumpDisabled;
            }
            Reply::Dump(
                sh.store
                    .dump(class as usize, limit as usize, CACHEDUMP_MAX_BYTES),
            )
        }
        StatsGroup::DetailUsage => Reply::DetailUsage,
        StatsGroup::DetailOn | StatsGroup::DetailOff => {
            sh.prefix.set_on(group == StatsGroup::DetailOn);
            Reply::DetailSet
        }
        StatsGroup::DetailDump => Reply::DetailDump(sh.prefix.dump()),
    }
}
