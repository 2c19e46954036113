package net.grinder.script

import check.Recorder

/**
 * Stand-in for The Grinder's `Grinder`: the static `grinder` script context. Agent and process
 * are 0; the thread and run numbers are the calling thread's, as harness.groovy sets them.
 */
class Grinder {
	public static ScriptContext grinder = new StubContext()

	interface ScriptContext {
		int getAgentNumber()

		int getProcessNumber()

		int getThreadNumber()

		int getRunNumber()

		Object getLogger()

		Statistics getStatistics()

		void sleep(long meanTime)
	}

	static class StubContext implements ScriptContext {
		private final Statistics statistics = new Statistics()
		private final Object logger = new StubLogger()

		int getAgentNumber() { 0 }

		int getProcessNumber() { 0 }

		int getThreadNumber() { Recorder.thread() }

		int getRunNumber() { Recorder.RUN.get() }

		Object getLogger() { logger }

		Statistics getStatistics() { statistics }

		void sleep(long meanTime) { Thread.sleep(meanTime) }
	}

	/** The `{}` placeholders of nGrinder's (SLF4J) logger, printed to stderr. */
	static class StubLogger {
		private static void log(String level, String format, Object... args) {
			String text = format
			args.each { text = text.replaceFirst(/\{\}/, java.util.regex.Matcher.quoteReplacement(String.valueOf(it))) }
			System.err.println("  [thread ${Recorder.thread()}] ${level} ${text}")
		}

		void info(String format, Object... args) { log("INFO", format, args) }

		void warn(String format, Object... args) { log("WARN", format, args) }

		void error(String format, Object... args) { log("ERROR", format, args) }
	}
}
