// minipay — daily user: log in, look at the accounts, top up, send a friend money, read the
// history. Each thread is one user, signed up and funded in @BeforeThread.
// Script parameter (nGrinder "Parameter" field): base=http://HOST:PORT
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
class DailyUser {
	static String base
	static String runId
	static HTTPRequest request
	static GTest login, accounts, charge, transfer, history
	static final String PASSWORD = "ngrinder password"

	String name
	String token
	long mainAccountId
	String friendName
	long friendAccountId = 0
	def json = new JsonSlurper()

	@BeforeProcess
	static void beforeProcess() {
		HTTPRequestControl.setConnectionTimeout(30000)
		base = param("base", "http://127.0.0.1:8080")
		runId = Long.toString(System.currentTimeMillis(), 36)
		request = new HTTPRequest()
		login = new GTest(1, "POST /v1/sessions")
		accounts = new GTest(2, "GET /v1/accounts")
		charge = new GTest(3, "POST /v1/accounts/{id}/charges")
		transfer = new GTest(4, "POST /v1/transfers")
		history = new GTest(5, "GET /v1/accounts/{id}/history")
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

	Object get(String path, String bearer) {
		request.setHeaders(["Authorization": "Bearer " + bearer])
		HTTPResponse response = request.GET(base + path)
		request.setHeaders([:])
		assertThat(path + " " + response.getBodyText(), response.statusCode.intdiv(100), is(2))
		json.parseText(response.getBodyText())
	}

	@BeforeThread
	void beforeThread() {
		// One user per thread; the previous thread's user is this one's friend.
		name = "ng-daily-${runId}-${grinder.agentNumber}-${grinder.processNumber}-${grinder.threadNumber}"
		def user = post("/v1/users", [name: name, password: PASSWORD])
		mainAccountId = user.main_account_id as long
		token = post("/v1/sessions", [name: name, password: PASSWORD]).token
		post("/v1/accounts/${mainAccountId}/charges", [amount: 1000000], token)
		// The friend is the previous thread's user (thread 0's: the next one), looked up once it exists.
		friendName = "ng-daily-${runId}-${grinder.agentNumber}-${grinder.processNumber}-${grinder.threadNumber == 0 ? 1 : grinder.threadNumber - 1}"
		login.record(this, "doLogin")
		accounts.record(this, "doAccounts")
		charge.record(this, "doCharge")
		transfer.record(this, "doTransfer")
		history.record(this, "doHistory")
		grinder.statistics.delayReports = true
	}

	void doLogin() { token = post("/v1/sessions", [name: name, password: PASSWORD]).token }

	void doAccounts() { get("/v1/accounts", token) }

	void doCharge() { post("/v1/accounts/${mainAccountId}/charges", [amount: 1000], token) }

	void doTransfer() {
		post("/v1/transfers", [to_account_id: friendAccountId, amount: 1 + new Random().nextInt(100), memo: "coffee"], token)
	}

	/** Not timed: finds the friend's account once the friend's thread has signed up. */
	void findFriend() {
		request.setHeaders(["Authorization": "Bearer " + token])
		HTTPResponse response = request.GET(base + "/v1/users/" + friendName)
		request.setHeaders([:])
		if (response.statusCode == 200) {
			friendAccountId = json.parseText(response.getBodyText()).main_account_id as long
		}
	}

	void doHistory() { get("/v1/accounts/${mainAccountId}/history?limit=20", token) }

	@Test
	void test() {
		doLogin()
		doAccounts()
		doCharge()
		if (friendAccountId == 0) findFriend()
		if (friendAccountId != 0) doTransfer()
		doHistory()
	}
}
