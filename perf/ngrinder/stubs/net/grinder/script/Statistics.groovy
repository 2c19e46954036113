package net.grinder.script

/** Stand-in for The Grinder's script statistics: what the scripts use of it. */
class Statistics {
	private final ThreadLocal<Boolean> delay = ThreadLocal.withInitial { false }

	void setDelayReports(boolean delayReports) { delay.set(delayReports) }

	boolean isDelayReports() { delay.get() }
}
