// Runs one nGrinder script as an agent process would, against the stand-ins of this folder:
// @BeforeProcess once, then THREADS threads, each with its own instance of the test class:
// @BeforeThread, ITERATIONS runs of every @Test method (a failing one is an error, the run
// goes on, as in nGrinder), @AfterThread; then @AfterProcess. Then it judges what the
// stand-ins recorded and exits non-zero on:
//   - a test method that failed, or a script that did not compile or set up;
//   - an answer that is not 2xx nor an expected refusal (422 daily-limit-exceeded; 409
//     name-taken for the shared payday receiver);
//   - a bearer token sent by another thread than the one it was issued to, or one
//     HTTPRequest instance whose shared headers field is set while several threads use it;
//   - a request in EXPECT (e.g. "POST /v1/transfers") that never got a 2xx; EXPECT "refused":
//     no request was refused.
// Usage: groovy -cp stubs stubs/harness.groovy SCRIPT THREADS ITERATIONS PARAM [EXPECT...]
import check.Recorder
import groovy.json.JsonSlurper
import net.grinder.scriptengine.groovy.junit.annotation.AfterProcess
import net.grinder.scriptengine.groovy.junit.annotation.AfterThread
import net.grinder.scriptengine.groovy.junit.annotation.BeforeProcess
import net.grinder.scriptengine.groovy.junit.annotation.BeforeThread
import org.junit.After
import org.junit.Before
import org.junit.Test

import java.lang.reflect.InvocationTargetException
import java.lang.reflect.Method
import java.lang.reflect.Modifier

if (args.length < 4) {
	System.err.println("usage: harness.groovy SCRIPT THREADS ITERATIONS PARAM [EXPECT...]")
	System.exit(2)
}
def script = new File(args[0])
int threads = args[1] as int
int iterations = args[2] as int
String param = args[3]
List<String> expected = args.length > 4 ? args[4..-1].toList() : []
List<String> problems = Collections.synchronizedList([])

// What the controller's script-parameter field accepts.
if (!(param ==~ /[a-zA-Z0-9_.,|=]{0,50}/)) {
	System.err.println("parameter '${param}' could not be entered in nGrinder: [a-zA-Z0-9_.,|=]{0,50}")
	System.exit(1)
}
System.setProperty("param", param)
// The README's Target Host mapping of the default host name.
System.setProperty("check.targetHosts", "minipay=127.0.0.1")

Class<?> testClass = new GroovyClassLoader(this.class.classLoader).parseClass(script)
List<Method> annotated(Class<?> type, Class annotation) {
	type.methods.findAll { it.isAnnotationPresent(annotation) }.sort { it.name }
}

def call = { Object target, Method method ->
	try {
		method.invoke(target)
		true
	} catch (InvocationTargetException e) {
		def cause = e.cause
		problems << "thread ${Recorder.thread()} run ${Recorder.RUN.get()}: ${method.name}: ${cause}"
		false
	}
}

annotated(testClass, BeforeProcess).each {
	assert Modifier.isStatic(it.modifiers): "@BeforeProcess ${it.name} must be static"
	call(null, it)
}
def workers = (0..<threads).collect { number ->
	Thread.start("thread-${number}") {
		Recorder.THREAD.set(number)
		def instance = testClass.getDeclaredConstructor().newInstance()
		if (!annotated(testClass, BeforeThread).every { call(instance, it) }) return
		for (int run = 0; run < iterations; run++) {
			Recorder.RUN.set(run)
			annotated(testClass, Before).each { call(instance, it) }
			// Through the metaclass, as a JUnit runner's call would reach the recorded methods.
			annotated(testClass, Test).each { method ->
				try {
					instance.invokeMethod(method.name, null)
				} catch (Throwable failure) {
					problems << "thread ${number} run ${run}: ${method.name}: ${failure}"
				}
			}
			annotated(testClass, After).each { call(instance, it) }
		}
		annotated(testClass, AfterThread).each { call(instance, it) }
	}
}
workers*.join()
annotated(testClass, AfterProcess).each { call(null, it) }

// Judge the exchanges.
def json = new JsonSlurper()
def code = { Map exchange ->
	try { json.parseText(exchange.body as String)?.code } catch (ignored) { null }
}
int refused = 0
Recorder.exchanges.each { Map e ->
	String what = "${e.method} ${e.path} (thread ${e.thread}, test ${e.test})"
	int status = e.status as int
	if (status.intdiv(100) != 2) {
		String problemCode = code(e)
		if (status == 422 && problemCode == "daily-limit-exceeded") {
			refused++
		} else if (status == 409 && problemCode == "name-taken" && e.method == "POST" && e.path == "/v1/users") {
			// A thread that found the shared receiver already signed up.
		} else {
			problems << "${what}: ${status} ${e.body}"
		}
	}
	if (e.bearer != null) {
		Integer owner = Recorder.tokenOwners[e.bearer as String]
		if (owner == null) {
			problems << "${what}: sent a bearer token no log-in of this run issued ('${e.bearer}')"
		} else if (owner != e.thread) {
			problems << "${what}: sent the token issued to thread ${owner}"
		}
	}
}
Recorder.headerSetters.each { instance, setters ->
	def users = Recorder.instanceThreads[instance] ?: [] as Set
	if ((users + setters).size() > 1) {
		problems << "one HTTPRequest instance's shared headers field set by threads ${setters.sort()} and used by threads ${users.sort()}"
	}
}
expected.each { String request ->
	if (request == "refused") {
		if (refused == 0) problems << "no request was refused (daily-limit-exceeded): the refusal path did not run"
		return
	}
	def (method, path) = request.split(" ", 2)
	def pattern = ~("^" + path.replaceAll(/\{[^}]*\}/, "[^/]+") + '$')
	if (!Recorder.exchanges.any { it.method == method && it.path ==~ pattern && (it.status as int).intdiv(100) == 2 }) {
		problems << "no ${request} answered 2xx"
	}
}

println "${script.name}: ${threads} threads x ${iterations} runs, ${Recorder.exchanges.size()} requests, ${refused} refused (daily-limit-exceeded)"
Recorder.tests.sort().each { number, stats ->
	println "  test ${number} ${stats.description}: ${stats.calls} calls, ${stats.failures} failed"
}
if (Recorder.tests.isEmpty()) problems << "no GTest recorded"
Recorder.tests.each { number, stats ->
	if (stats.calls == 0) problems << "test ${number} (${stats.description}) never ran"
}
if (problems) {
	problems.take(20).each { System.err.println("  FAIL ${it}") }
	if (problems.size() > 20) System.err.println("  ... and ${problems.size() - 20} more")
	System.exit(1)
}
