package check

import java.util.concurrent.ConcurrentHashMap
import java.util.concurrent.ConcurrentLinkedQueue

/**
 * What the stand-ins saw, for harness.groovy to judge: every HTTP exchange (which thread sent
 * it, with which bearer token, on which HTTPRequest instance), which thread each session
 * token was issued to, and the calls of every recorded test.
 */
class Recorder {
	/** The nGrinder thread number of the calling thread; -1 for the process (@BeforeProcess). */
	static final ThreadLocal<Integer> THREAD = ThreadLocal.withInitial { -1 }
	static final ThreadLocal<Integer> RUN = ThreadLocal.withInitial { 0 }
	/** The test whose recorded method is running on this thread, if any. */
	static final ThreadLocal<Integer> CURRENT_TEST = new ThreadLocal<>()

	static final Queue<Map> exchanges = new ConcurrentLinkedQueue<>()
	static final Map<String, Integer> tokenOwners = new ConcurrentHashMap<>()
	/** HTTPRequest instance → threads that sent through it. */
	static final Map<Integer, Set<Integer>> instanceThreads = new ConcurrentHashMap<>()
	/** HTTPRequest instance → threads that set its (shared) headers field. */
	static final Map<Integer, Set<Integer>> headerSetters = new ConcurrentHashMap<>()
	/** Test number → [description, calls, failures]. */
	static final Map<Integer, Map> tests = new ConcurrentHashMap<>()

	static int thread() { THREAD.get() }

	static void usedBy(int instance, Map<Integer, Set<Integer>> table) {
		table.computeIfAbsent(instance) { ConcurrentHashMap.newKeySet() }.add(thread())
	}

	static void exchange(Map entry) { exchanges.add(entry) }

	static void reset() {
		exchanges.clear()
		tokenOwners.clear()
		instanceThreads.clear()
		headerSetters.clear()
		tests.clear()
	}
}
