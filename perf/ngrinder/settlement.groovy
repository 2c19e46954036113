// minipay — settlement evening: a user splits a bill with three friends (equal and random in
// turn), each friend pays a share, the requester looks at the settlement. Each thread signs
// up a group of four in @BeforeThread.
// Script parameter: base=http://HOST:PORT
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
class Settlement {
	static String base
	static String runId
	static HTTPRequest request
	static GTest create, pay, look
	static final String PASSWORD = "ngrinder password"

	String requesterToken
	List<Map> friends = []
	long sequence = 0
	long settlementId
	def json = new JsonSlurper()

	@BeforeProcess
	static void beforeProcess() {
		HTTPRequestControl.setConnectionTimeout(30000)
		base = param("base", "http://127.0.0.1:8080")
		runId = Long.toString(System.currentTimeMillis(), 36)
		request = new HTTPRequest()
		create = new GTest(1, "POST /v1/settlements")
		pay = new GTest(2, "POST /v1/settlements/{id}/pay")
		look = new GTest(3, "GET /v1/settlements/{id}")
	}

	static String param(String key, String fallback) {
		def raw = System.getProperty("param", "")
		def pair = raw.split(",").collect { it.trim() }.find { it.startsWith(key + "=") }
		pair ? pair.substring(key.length() + 1) : fallback
	}

	Map post(String path, Map body, String bearer = null) {
		def headers = ["Content-Type": "application/json"]
		if (bearer) headers["Authorization"] = "Bearer " + bearer
		HTTPResponse response = request.POST(base + path, JsonOutput.toJson(body).getBytes("UTF-8"), headers)
		assertThat(path + " " + response.getBodyText(), response.statusCode.intdiv(100), is(2))
		json.parseText(response.getBodyText()) as Map
	}

	Map signUp(String name) {
		def user = post("/v1/users", [name: name, password: PASSWORD])
		def token = post("/v1/sessions", [name: name, password: PASSWORD]).token
		post("/v1/accounts/${user.main_account_id}/charges", [amount: 1000000], token)
		[id: user.id, token: token]
	}

	@BeforeThread
	void beforeThread() {
		def prefix = "ng-split-${runId}-${grinder.agentNumber}-${grinder.processNumber}-${grinder.threadNumber}"
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
		settlementId = post("/v1/settlements", body, requesterToken).id as long
	}

	void doPay(String token) { post("/v1/settlements/${settlementId}/pay", [:], token) }

	void doLook() {
		request.setHeaders(["Authorization": "Bearer " + requesterToken])
		HTTPResponse response = request.GET(base + "/v1/settlements/" + settlementId)
		request.setHeaders([:])
		assertThat(response.statusCode, is(200))
	}

	@Test
	void test() {
		doCreate()
		friends.each { doPay(it.token as String) }
		doLook()
	}
}
