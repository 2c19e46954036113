// minipay: settlement evening. A user splits a bill with three friends (equal and random in
// turn), each friend pays a share, the requester looks at the settlement. Each thread signs
// up, tops up and logs in its group of four once (@BeforeThread).
// Script parameter: host=10.0.0.5,port=8080 (defaults: host minipay, port 8080).
// nGrinder 3.5.4 or later (org.ngrinder.http). See README.md in this folder.
import static net.grinder.script.Grinder.grinder

import groovy.json.JsonOutput
import groovy.json.JsonSlurper
import net.grinder.script.GTest
import net.grinder.scriptengine.groovy.junit.GrinderRunner
import net.grinder.scriptengine.groovy.junit.annotation.AfterThread
import net.grinder.scriptengine.groovy.junit.annotation.BeforeProcess
import net.grinder.scriptengine.groovy.junit.annotation.BeforeThread
import org.junit.Test
import org.junit.runner.RunWith
import org.ngrinder.http.HTTPRequest
import org.ngrinder.http.HTTPRequestControl
import org.ngrinder.http.HTTPResponse

@RunWith(GrinderRunner)
class Settlement {
	static final String PASSWORD = "ngrinder password"
	static String base
	static String runId
	static GTest create, pay, look

	// Per thread (one instance of this class per thread): nothing here is shared.
	HTTPRequest request
	String requesterToken
	List<Map> friends = []
	long sequence = 0
	long settlementId
	Map<String, Integer> refused = [:]
	def json = new JsonSlurper()

	@BeforeProcess
	static void beforeProcess() {
		HTTPRequestControl.setConnectionTimeout(30000)
		def params = parameters([host: "minipay", port: "8080"])
		base = baseUrl(params)
		runId = Long.toString(System.currentTimeMillis(), 36)
		create = new GTest(1, "POST /v1/settlements")
		pay = new GTest(2, "POST /v1/settlements/{id}/pay")
		look = new GTest(3, "GET /v1/settlements/{id}")
		grinder.logger.info("settlement evening against {}", base)
	}

	/**
	 * The controller's script parameter (only [a-zA-Z0-9_.,|=], at most 50 characters):
	 * key=value pairs separated by commas; unknown keys are reported, empty values keep
	 * the default.
	 */
	static Map<String, String> parameters(Map<String, String> defaults) {
		Map<String, String> values = new LinkedHashMap<>(defaults)
		(System.getProperty("param") ?: "").split(",").each { String pair ->
			if (!pair.trim()) return
			int equals = pair.indexOf("=")
			String key = (equals < 0 ? pair : pair.substring(0, equals)).trim()
			String value = equals < 0 ? "" : pair.substring(equals + 1).trim()
			if (!defaults.containsKey(key)) {
				grinder.logger.warn("unknown script parameter '{}' ignored; known: {}", key, defaults.keySet().join(", "))
			} else if (value) {
				values[key] = value
			}
		}
		values
	}

	static String baseUrl(Map<String, String> params) {
		String port = params.port
		if (!(port ==~ /\d{1,5}/) || (port as int) < 1 || (port as int) > 65535) {
			throw new IllegalArgumentException("script parameter port=" + port + " is not a port number")
		}
		"http://" + params.host + ":" + port
	}

	/** Sends with one of this thread's tokens, headers given with the call (never the shared field). */
	HTTPResponse send(String method, String path, Map body, String token) {
		Map<String, String> headers = ["Accept": "application/json"]
		if (token) headers["Authorization"] = "Bearer " + token
		if (method == "GET") return request.GET(base + path, [:], headers)
		headers["Content-Type"] = "application/json"
		request.POST(base + path, JsonOutput.toJson(body ?: [:]).getBytes("UTF-8"), headers)
	}

	/**
	 * The answer's JSON; null for an expected refusal (422 daily-limit-exceeded: the day's
	 * top-up limit is used up, nothing was charged), counted per request and not an error.
	 * Anything else that is not 2xx fails the test.
	 */
	Object answer(String what, HTTPResponse response, boolean refusable = false) {
		String text = response.getBodyText()
		if (response.statusCode.intdiv(100) == 2) return text ? json.parseText(text) : [:]
		if (refusable && response.statusCode == 422 && text.contains("\"daily-limit-exceeded\"")) {
			refused[what] = (refused[what] ?: 0) + 1
			return null
		}
		throw new AssertionError(what + ": " + response.statusCode + " " + text)
	}

	/** Signs up a user, logs in and tops up: [id, token]. */
	Map signUp(String name) {
		def user = answer("sign up", send("POST", "/v1/users", [name: name, password: PASSWORD], null))
		String token = answer("log in", send("POST", "/v1/sessions", [name: name, password: PASSWORD], null)).token
		answer("first top-up", send("POST", "/v1/accounts/${user.main_account_id}/charges", [amount: 1000000], token))
		[id: user.id, token: token]
	}

	@BeforeThread
	void beforeThread() {
		request = new HTTPRequest()
		String prefix = "ng-split-${runId}-${grinder.agentNumber}-${grinder.processNumber}-${grinder.threadNumber}"
		requesterToken = signUp(prefix + "-r").token
		(1..3).each { friends << signUp(prefix + "-f" + it) }
		create.record(this, "doCreate")
		pay.record(this, "doPay")
		look.record(this, "doLook")
		grinder.statistics.delayReports = true
	}

	void doCreate() {
		def body = [
			total            : (10 + new Random().nextInt(291)) * 100,
			mode             : sequence++ % 2 == 0 ? "equal" : "random",
			participant_ids  : friends.collect { it.id },
			include_requester: true,
			memo             : "dinner",
		]
		settlementId = answer("create", send("POST", "/v1/settlements", body, requesterToken)).id as long
	}

	void doPay(String token) {
		answer("pay", send("POST", "/v1/settlements/${settlementId}/pay", [:], token), true)
	}

	void doLook() { answer("look", send("GET", "/v1/settlements/${settlementId}", null, requesterToken)) }

	@Test
	void test() {
		doCreate()
		friends.each { doPay(it.token as String) }
		doLook()
	}

	@AfterThread
	void afterThread() {
		if (refused) grinder.logger.info("refused (daily-limit-exceeded, not errors): {}", refused)
	}
}
