// minipay — statement reader, naive vs tuned: each thread reads a busy account's history,
// the first page and the page 90% of the way back, through both routes in turn:
//   tuned  GET /v1/accounts/{id}/history            (ClickHouse, keyset cursor)
//   naive  GET /v1/accounts/{id}/history/naive      (PostgreSQL, OFFSET page + count)
// Needs a server on a database seeded with `minipay seed` (users seedhot, seedheavy1..N,
// password "seeded password"). The deep cursor is found before the test by following
// next_cursor from the first page (not timed), exactly as the naive page number counts.
// Script parameter: base=http://HOST:PORT,accounts=seedhot;seedheavy1;seedheavy2,deep=90,mode=both
//   mode: both (default), tuned or naive — one route alone, to load it by itself.
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
class StatementReader {
	static String base
	static String mode
	static int deepPercent
	static List<String> names
	static final int LIMIT = 50
	static final int WALK_LIMIT = 200
	static HTTPRequest request
	static GTest tunedFirst, tunedDeep, naiveFirst, naiveDeep

	long accountId
	String token
	long deepPage
	String deepCursor
	def json = new JsonSlurper()

	@BeforeProcess
	static void beforeProcess() {
		HTTPRequestControl.setConnectionTimeout(60000)
		base = param("base", "http://127.0.0.1:8080")
		mode = param("mode", "both")
		deepPercent = param("deep", "90") as int
		names = param("accounts", "seedhot;seedheavy1;seedheavy2;seedheavy3;seedheavy4").split(";").toList()
		request = new HTTPRequest()
		tunedFirst = new GTest(1, "GET history (tuned, first page)")
		tunedDeep = new GTest(2, "GET history (tuned, deep page)")
		naiveFirst = new GTest(3, "GET history/naive (first page)")
		naiveDeep = new GTest(4, "GET history/naive (deep page)")
	}

	static String param(String key, String fallback) {
		def raw = System.getProperty("param", "")
		def pair = raw.split(",").collect { it.trim() }.find { it.startsWith(key + "=") }
		pair ? pair.substring(key.length() + 1) : fallback
	}

	Map get(String path) {
		request.setHeaders(["Authorization": "Bearer " + token])
		HTTPResponse response = request.GET(base + "/v1/accounts/" + accountId + path)
		assertThat(path + " " + response.getBodyText(), response.statusCode, is(200))
		json.parseText(response.getBodyText()) as Map
	}

	@BeforeThread
	void beforeThread() {
		def name = names[grinder.threadNumber % names.size()]
		def headers = ["Content-Type": "application/json"]
		HTTPResponse session = request.POST(base + "/v1/sessions",
			JsonOutput.toJson([name: name, password: "seeded password"]).getBytes("UTF-8"), headers)
		assertThat("log in as " + name, session.statusCode, is(201))
		token = json.parseText(session.getBodyText()).token
		request.setHeaders(["Authorization": "Bearer " + token])
		HTTPResponse user = request.GET(base + "/v1/users/" + name)
		accountId = json.parseText(user.getBodyText()).main_account_id as long
		long total = get("/history/naive?limit=${LIMIT}&page=0").total as long
		long lastPage = Math.max(0, total - 1).intdiv(LIMIT)
		deepPage = (lastPage * deepPercent + 50).intdiv(100)
		// Follow next_cursor over the deepPage * LIMIT entries before the deep page.
		long before = deepPage * LIMIT
		while (before > 0) {
			int step = Math.min(before, WALK_LIMIT) as int
			def page = get("/history?limit=${step}" + (deepCursor ? "&cursor=${deepCursor}" : ""))
			deepCursor = page.next_cursor
			before -= step
		}
		tunedFirst.record(this, "doTunedFirst")
		tunedDeep.record(this, "doTunedDeep")
		naiveFirst.record(this, "doNaiveFirst")
		naiveDeep.record(this, "doNaiveDeep")
		grinder.statistics.delayReports = true
	}

	void doTunedFirst() { get("/history?limit=${LIMIT}") }

	void doTunedDeep() { get("/history?limit=${LIMIT}" + (deepCursor ? "&cursor=${deepCursor}" : "")) }

	void doNaiveFirst() { get("/history/naive?limit=${LIMIT}&page=0") }

	void doNaiveDeep() { get("/history/naive?limit=${LIMIT}&page=${deepPage}") }

	@Test
	void test() {
		if (mode != "naive") {
			doTunedFirst()
			doTunedDeep()
		}
		if (mode != "tuned") {
			doNaiveFirst()
			doNaiveDeep()
		}
	}
}
