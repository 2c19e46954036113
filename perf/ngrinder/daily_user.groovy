// minipay: daily user. Each thread is one user, signed up, topped up with 1,000,000 KRW and
// logged in once (@BeforeThread), with a friend of its own; every iteration looks at the
// accounts, tops up 1,000 KRW, sends the friend 1-100 KRW and reads the history.
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
class DailyUser {
	static final String PASSWORD = "ngrinder password"
	static String base
	static String runId
	static GTest accounts, charge, transfer, history

	// Per thread (nGrinder makes one instance of this class per thread): the request object,
	// the session token and the counts are never shared with another thread.
	HTTPRequest request
	String token
	long mainAccountId
	long friendAccountId
	Map<String, Integer> refused = [:]
	def json = new JsonSlurper()

	@BeforeProcess
	static void beforeProcess() {
		HTTPRequestControl.setConnectionTimeout(30000)
		def params = parameters([host: "minipay", port: "8080"])
		base = baseUrl(params)
		runId = Long.toString(System.currentTimeMillis(), 36)
		accounts = new GTest(1, "GET /v1/accounts")
		charge = new GTest(2, "POST /v1/accounts/{id}/charges")
		transfer = new GTest(3, "POST /v1/transfers")
		history = new GTest(4, "GET /v1/accounts/{id}/history")
		grinder.logger.info("daily user against {}", base)
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

	/** Signs up a user and tops it up; returns its main account, leaves its token in `token`. */
	long signUp(String name) {
		token = null
		def user = answer("sign up", send("POST", "/v1/users", [name: name, password: PASSWORD]))
		token = answer("log in", send("POST", "/v1/sessions", [name: name, password: PASSWORD])).token
		long account = user.main_account_id as long
		answer("first top-up", send("POST", "/v1/accounts/${account}/charges", [amount: 1000000]))
		account
	}

	@BeforeThread
	void beforeThread() {
		request = new HTTPRequest()
		String name = "ng-daily-${runId}-${grinder.agentNumber}-${grinder.processNumber}-${grinder.threadNumber}"
		// The friend first, so that the user's own session is the one kept.
		friendAccountId = signUp(name + "-f")
		mainAccountId = signUp(name)
		accounts.record(this, "doAccounts")
		charge.record(this, "doCharge")
		transfer.record(this, "doTransfer")
		history.record(this, "doHistory")
		grinder.statistics.delayReports = true
	}

	void doAccounts() { answer("accounts", send("GET", "/v1/accounts")) }

	void doCharge() {
		answer("top-up", send("POST", "/v1/accounts/${mainAccountId}/charges", [amount: 1000]), true)
	}

	void doTransfer() {
		def body = [to_account_id: friendAccountId, amount: 1 + new Random().nextInt(100), memo: "coffee"]
		// Refused too when the balance is short and the automatic top-up is over the limit.
		answer("transfer", send("POST", "/v1/transfers", body), true)
	}

	void doHistory() { answer("history", send("GET", "/v1/accounts/${mainAccountId}/history?limit=20")) }

	@Test
	void test() {
		doAccounts()
		doCharge()
		doTransfer()
		doHistory()
	}

	@AfterThread
	void afterThread() {
		if (refused) grinder.logger.info("refused (daily-limit-exceeded, not errors): {}", refused)
	}
}
