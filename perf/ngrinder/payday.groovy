// minipay — payday crowd: every thread sends to the same account (one company or landlord
// account receiving from everyone at once). The receiver is the user named by the `receiver`
// parameter, signed up (and funded) by the first thread that finds it missing.
// Script parameter: base=http://HOST:PORT,receiver=payday
import static net.grinder.script.Grinder.grinder
import static org.hamcrest.Matchers.is
import static org.junit.Assert.assertThat

import groovy.json.JsonOutput
import groovy.json.JsonSlurper
import net.grinder.script.GTest
import net.grinder.scriptengine.groovy.junit.GrinderRunner
import net.grinder.scriptengine.groovy.junit.annotation.BeforeProcess
import net.grinder.scriptengine.groovy.junit.annotation.BeforeThread
import org.junit.Test
import org.junit.runner.RunWith
import org.ngrinder.http.HTTPRequest
import org.ngrinder.http.HTTPRequestControl
import org.ngrinder.http.HTTPResponse

@RunWith(GrinderRunner)
class Payday {
	static String base
	static String runId
	static String receiverName
	static HTTPRequest request
	static GTest transfer
	static final String PASSWORD = "ngrinder password"

	String token
	long receiverAccountId
	def json = new JsonSlurper()

	@BeforeProcess
	static void beforeProcess() {
		HTTPRequestControl.setConnectionTimeout(30000)
		base = param("base", "http://127.0.0.1:8080")
		receiverName = param("receiver", "payday")
		runId = Long.toString(System.currentTimeMillis(), 36)
		request = new HTTPRequest()
		transfer = new GTest(1, "POST /v1/transfers (to one account)")
	}

	static String param(String key, String fallback) {
		def raw = System.getProperty("param", "")
		def pair = raw.split(",").collect { it.trim() }.find { it.startsWith(key + "=") }
		pair ? pair.substring(key.length() + 1) : fallback
	}

	HTTPResponse postRaw(String path, Map body, String bearer = null) {
		def headers = ["Content-Type": "application/json"]
		if (bearer) headers["Authorization"] = "Bearer " + bearer
		request.POST(base + path, JsonOutput.toJson(body).getBytes("UTF-8"), headers)
	}

	Map post(String path, Map body, String bearer = null) {
		HTTPResponse response = postRaw(path, body, bearer)
		assertThat(path + " " + response.getBodyText(), response.statusCode.intdiv(100), is(2))
		json.parseText(response.getBodyText()) as Map
	}

	@BeforeThread
	void beforeThread() {
		// 201, or 409 name-taken when another thread or agent signed the receiver up first.
		postRaw("/v1/users", [name: receiverName, password: PASSWORD])
		def name = "ng-payday-${runId}-${grinder.agentNumber}-${grinder.processNumber}-${grinder.threadNumber}"
		def user = post("/v1/users", [name: name, password: PASSWORD])
		token = post("/v1/sessions", [name: name, password: PASSWORD]).token
		post("/v1/accounts/${user.main_account_id}/charges", [amount: 1000000], token)
		request.setHeaders(["Authorization": "Bearer " + token])
		HTTPResponse found = request.GET(base + "/v1/users/" + receiverName)
		request.setHeaders([:])
		receiverAccountId = json.parseText(found.getBodyText()).main_account_id as long
		transfer.record(this, "doTransfer")
		grinder.statistics.delayReports = true
	}

	void doTransfer() {
		post("/v1/transfers", [to_account_id: receiverAccountId, amount: 1 + new Random().nextInt(100)], token)
	}

	@Test
	void test() {
		doTransfer()
	}
}
