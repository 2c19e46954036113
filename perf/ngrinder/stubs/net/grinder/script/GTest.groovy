package net.grinder.script

import check.Recorder
import org.codehaus.groovy.reflection.CachedClass

/**
 * Stand-in for nGrinder's `GTest(int number, String description)`. `record(target, method)`
 * makes every later call of that method on that target a timed test, as nGrinder's
 * instrumentation does: here through the target's own metaclass, counting calls and
 * failures (an exception thrown by the method) per test number.
 */
class GTest {
	final int number
	final String description

	GTest(int number, String description) {
		this.number = number
		this.description = description
		Recorder.tests.putIfAbsent(number, [description: description, calls: 0, failures: 0].asSynchronized())
	}

	void record(Object target, String methodName) {
		if (!target.metaClass.methods.any { it.name == methodName }) {
			throw new IllegalArgumentException("GTest ${number}: ${target.getClass().name} has no method ${methodName}")
		}
		MetaClass current = target.metaClass
		RecordingMetaClass recording = current instanceof RecordingMetaClass ? current : new RecordingMetaClass(current)
		recording.recorded[methodName] = this
		((GroovyObject) target).setMetaClass(recording)
	}

	Object invoke(Closure<Object> call) {
		Map stats = Recorder.tests[number]
		Integer outer = Recorder.CURRENT_TEST.get()
		Recorder.CURRENT_TEST.set(number)
		synchronized (stats) { stats.calls++ }
		try {
			return call()
		} catch (Throwable failure) {
			synchronized (stats) { stats.failures++ }
			throw failure
		} finally {
			Recorder.CURRENT_TEST.set(outer)
		}
	}

	static class RecordingMetaClass extends DelegatingMetaClass {
		final Map<String, GTest> recorded = [:]

		RecordingMetaClass(MetaClass delegate) { super(delegate) }

		@Override
		Object invokeMethod(Object object, String methodName, Object[] arguments) {
			MetaClass inner = adaptee
			GTest test = recorded[methodName]
			Closure<Object> call = { inner.invokeMethod(object, methodName, arguments) }
			test ? test.invoke(call) : call()
		}

		/** Closures reach their owner's methods by picking them (then invoking the pick). */
		@Override
		MetaMethod pickMethod(String methodName, Class[] arguments) {
			MetaMethod method = adaptee.pickMethod(methodName, arguments)
			GTest test = recorded[methodName]
			method && test ? new RecordedMethod(method, test) : method
		}

		@Override
		Object invokeMethod(Object object, String methodName, Object arguments) {
			MetaClass inner = adaptee
			GTest test = recorded[methodName]
			Closure<Object> call = { inner.invokeMethod(object, methodName, arguments) }
			test ? test.invoke(call) : call()
		}

		@Override
		Object invokeMethod(Class sender, Object object, String methodName, Object[] arguments, boolean isCallToSuper,
		                    boolean fromInsideClass) {
			MetaClass inner = adaptee
			GTest test = recorded[methodName]
			Closure<Object> call = { inner.invokeMethod(sender, object, methodName, arguments, isCallToSuper, fromInsideClass) }
			test ? test.invoke(call) : call()
		}
	}

	static class RecordedMethod extends MetaMethod {
		final MetaMethod method
		final GTest test

		RecordedMethod(MetaMethod method, GTest test) {
			super(method.nativeParameterTypes)
			this.method = method
			this.test = test
		}

		int getModifiers() { method.modifiers }

		String getName() { method.name }

		Class getReturnType() { method.returnType }

		CachedClass getDeclaringClass() { method.declaringClass }

		Object invoke(Object object, Object[] arguments) { test.invoke { method.invoke(object, arguments) } }
	}
}
