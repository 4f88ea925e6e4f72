//! Stopping and continuing processes (issue 22): SIGSTOP — and SIGTSTP, SIGTTIN, SIGTTOU with
//! their default action — stop every thread of the process at its next return to user mode
//! (a thread spinning in user mode is reached like a kill, a thread blocked in a call is
//! interrupted and the call restarted once it continues); SIGCONT continues it. The parent
//! learns both through `wait4`'s WUNTRACED / WCONTINUED and SIGCHLD (CLD_STOPPED /
//! CLD_CONTINUED, unless its SIGCHLD action has SA_NOCLDSTOP). SIGKILL ends a stopped process.
//!
//! Not supported yet: job control in the shell (ctrl-z, `fg`, `bg`), the orphaned process
//! group rule, controlling terminals (the kernel never sends SIGTTIN/SIGTTOU itself).
use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use signals::{SA_NOCLDSTOP, SIGCHLD, SigInfo};

use crate::process::{self, Process};
use crate::sched::{self, Tid};

const CLD_STOPPED: i32 = 5;
const CLD_CONTINUED: i32 = 6;

/// A process's stop state.
#[derive(Default)]
pub struct StopState {
    stopped: bool,
    /// A stop not yet reported by wait4 (WUNTRACED): the signal.
    report_stop: u32,
    /// A continue not yet reported by wait4 (WCONTINUED).
    report_cont: bool,
}

fn tell_parent(p: &Process, code: i32, sig: u32) {
    let Some(parent) = process::get(p.parent) else { return };
    parent.child_exit.up();
    let flags = parent.sig.lock().action_flags(SIGCHLD);
    if flags & SA_NOCLDSTOP == 0 {
        let _ = crate::signal::send(&parent, None, SigInfo::child(p.pid, code, sig as i32));
    }
}

/// Stops `p` (signal `sig`): every thread parks at its next return to user mode.
pub fn stop(p: &Arc<Process>, sig: u32) {
    {
        let mut s = p.stop.lock();
        if s.stopped {
            return;
        }
        s.stopped = true;
        s.report_stop = sig;
        s.report_cont = false;
    }
    let ts = p.threads.lock().clone();
    for t in ts {
        sched::set_signal_pending(t, true);
        let _ = sched::signal(t);
    }
    tell_parent(p, CLD_STOPPED, sig);
}

/// SIGCONT: continues `p` if it is stopped.
pub fn cont(p: &Arc<Process>) {
    {
        let mut s = p.stop.lock();
        if !s.stopped {
            return;
        }
        s.stopped = false;
        s.report_stop = 0;
        s.report_cont = true;
    }
    let ts = p.threads.lock().clone();
    for t in ts {
        let _ = sched::wake(t);
    }
    tell_parent(p, CLD_CONTINUED, signals::SIGCONT);
}

pub fn is_stopped(p: &Process) -> bool {
    p.stop.lock().stopped
}

/// The running thread `me` of stopped process `p`, on its way to user mode: waits until the
/// process is continued or killed. Signals that arrive meanwhile stay pending.
pub fn park(p: &Process, me: Tid) {
    loop {
        if !p.stop.lock().stopped || p.terminal.load(Ordering::Acquire) {
            break;
        }
        // Pending signals must not end the wait at once: they are acted on after it.
        sched::set_signal_pending(me, false);
        let _ = sched::block_current();
    }
    crate::signal::refresh(p, me);
}

/// wait4's report of child `c` beyond its end: a stop (WUNTRACED: status `0x7f | sig << 8`)
/// or a continue (WCONTINUED: `0xffff`), each reported once.
pub fn take_report(c: &Process, untraced: bool, continued: bool) -> Option<i32> {
    let mut s = c.stop.lock();
    if untraced && s.report_stop != 0 {
        let sig = core::mem::take(&mut s.report_stop);
        return Some(0x7f | (sig as i32) << 8);
    }
    if continued && s.report_cont {
        s.report_cont = false;
        return Some(0xffff);
    }
    None
}
