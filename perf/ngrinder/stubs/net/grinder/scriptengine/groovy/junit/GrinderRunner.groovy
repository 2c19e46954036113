package net.grinder.scriptengine.groovy.junit

import org.junit.runner.Description
import org.junit.runner.Runner
import org.junit.runner.notification.RunNotifier

/**
 * Stand-in for nGrinder's JUnit runner, only so that `@RunWith(GrinderRunner)` compiles:
 * `harness.groovy` runs the annotated methods itself, as nGrinder does (one instance per thread).
 */
class GrinderRunner extends Runner {
	private final Class<?> testClass

	GrinderRunner(Class<?> testClass) { this.testClass = testClass }

	@Override
	Description getDescription() { Description.createSuiteDescription(testClass) }

	@Override
	void run(RunNotifier notifier) { throw new UnsupportedOperationException("run the script with harness.groovy") }
}
