// minipay: payday crowd. Every thread sends to one account (a company or a landlord
// receiving from everyone at once): the user named by the `receiver` parameter, signed up by
// the first thread that finds it missing. Each thread signs up, tops up and logs in once.
// Script parameter: host=10.0.0.5,port=8080,receiver=payday (defaults minipay, 8080,
// payday). nGrinder 3.5.4 or later (org.ngrinder.http). See README.md in this folder.
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
class Payday {
	static final String PASSWORD = "ngrinder password"
	static String base
	static String runId
	static String receiverName
	static GTest transfer

	// Per thread (one instance of this class per thread): nothing here is shared.
	HTTPRequest request
	String token
	long receiverAccountId
	Map<String, Integer> refused = [:]
	def json = new JsonSlurper()

	@BeforeProcess
	static void beforeProcess() {
		HTTPRequestControl.setConnectionTimeout(30000)
		def params = parameters([host: "minipay", port: "8080", receiver: "payday"])
		base = baseUrl(params)
		receiverName = params.receiver
		runId = Long.toString(System.currentTimeMillis(), 36)
		transfer = new GTest(1, "POST /v1/transfers (to one account)")
		grinder.logger.info("payday against {}, receiver {}", base, receiverName)
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

	/** Sends with this thread's token, headers given with the call (never the shared field). */
	HTTPResponse send(String method, String path, Map body = null) {
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

	@BeforeThread
	void beforeThread() {
		request = new HTTPRequest()
		// 201, or 409 name-taken when another thread, agent or run signed the receiver up first.
		HTTPResponse receiver = send("POST", "/v1/users", [name: receiverName, password: PASSWORD])
		if (receiver.statusCode != 409) answer("sign up the receiver", receiver)
		String name = "ng-payday-${runId}-${grinder.agentNumber}-${grinder.processNumber}-${grinder.threadNumber}"
		def user = answer("sign up", send("POST", "/v1/users", [name: name, password: PASSWORD]))
		token = answer("log in", send("POST", "/v1/sessions", [name: name, password: PASSWORD])).token
		answer("first top-up", send("POST", "/v1/accounts/${user.main_account_id}/charges", [amount: 1000000]))
		receiverAccountId = answer("find the receiver", send("GET", "/v1/users/" + receiverName)).main_account_id as long
		transfer.record(this, "doTransfer")
		grinder.statistics.delayReports = true
	}

	void doTransfer() {
		def body = [to_account_id: receiverAccountId, amount: 1 + new Random().nextInt(100)]
		answer("transfer", send("POST", "/v1/transfers", body), true)
	}

	@Test
	void test() {
		doTransfer()
	}

	@AfterThread
	void afterThread() {
		if (refused) grinder.logger.info("refused (daily-limit-exceeded, not errors): {}", refused)
	}
}
