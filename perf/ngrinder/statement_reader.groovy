// minipay: statement reader, naive vs tuned. Each thread reads a busy account's history: the
// first page and the page `deep`% of the way back, through both routes in turn:
//   tuned  GET /v1/accounts/{id}/history        (ClickHouse, keyset cursor)
//   naive  GET /v1/accounts/{id}/history/naive  (PostgreSQL, OFFSET page + count)
// Needs a server on a database seeded with `minipay seed` (users seedhot, seedheavy1..4,
// password "seeded password"). Each deep page is found once per process, in @BeforeProcess
// and not timed (5 requests an account): its number from the naive total, its cursor from the
// tuned page just before it, fetched by time (`to=`) instead of walking every page; threads
// share these read-only, and each thread logs in once with a session of its own.
// Script parameter (at most 50 characters), e.g. host=10.0.0.5,accounts=seedhot,mode=tuned
//   host, port: the server (defaults: host minipay, port 8080);
//   accounts: seeded user names separated by | (default seedhot|seedheavy1|...|seedheavy4);
//   deep: 0-100 (default 90); mode: both (default), tuned or naive (one route alone).
// nGrinder 3.5.4 or later (org.ngrinder.http). See README.md in this folder.
import static net.grinder.script.Grinder.grinder

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

import java.time.Instant

@RunWith(GrinderRunner)
class StatementReader {
	static final String PASSWORD = "seeded password"
	static final int LIMIT = 50
	static String base
	static String mode
	/** One per account, found in @BeforeProcess and only read afterwards: name, id, deepPage, deepCursor. */
	static List<Map> statements
	static GTest tunedFirst, tunedDeep, naiveFirst, naiveDeep

	// Per thread (one instance of this class per thread): its own request object and session.
	HTTPRequest request
	String token
	Map statement
	Map<String, Integer> refused = [:]
	def json = new JsonSlurper()

	@BeforeProcess
	static void beforeProcess() {
		HTTPRequestControl.setConnectionTimeout(60000)
		def params = parameters([host: "minipay", port: "8080", accounts: "seedhot|seedheavy1|seedheavy2|seedheavy3|seedheavy4",
		                         deep: "90", mode: "both"])
		base = baseUrl(params)
		mode = params.mode
		if (!(mode in ["both", "tuned", "naive"])) {
			throw new IllegalArgumentException("script parameter mode=" + mode + ": both, tuned or naive")
		}
		if (!(params.deep ==~ /\d{1,3}/) || (params.deep as int) > 100) {
			throw new IllegalArgumentException("script parameter deep=" + params.deep + ": 0 to 100")
		}
		int deepPercent = params.deep as int
		List<String> names = params.accounts.split(/\|/).collect { it.trim() }.findAll { it }
		if (!names) throw new IllegalArgumentException("script parameter accounts: no account names")
		// Found once for the process, with a session of its own that no thread uses.
		def finder = new StatementReader()
		finder.request = new HTTPRequest()
		statements = names.collect { finder.findDeepPage(it, deepPercent).asImmutable() }.asImmutable()
		statements.each {
			grinder.logger.info("{}: account {}, deep page {} (naive page={}, tuned cursor {})",
				it.name, it.id, it.deepPage, it.deepPage, it.deepCursor)
		}
		tunedFirst = new GTest(1, "GET history (tuned, first page)")
		tunedDeep = new GTest(2, "GET history (tuned, deep page)")
		naiveFirst = new GTest(3, "GET history/naive (first page)")
		naiveDeep = new GTest(4, "GET history/naive (deep page)")
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

	void logIn(String name) {
		token = null
		token = answer("log in as " + name, send("POST", "/v1/sessions", [name: name, password: PASSWORD])).token
	}

	/**
	 * The account's deep page: `deepPercent` of the way to its last page (rounded), as
	 * `perf/run` picks it. The tuned route reaches it by the cursor after the page before it;
	 * that page is found by time: the naive route gives its newest entry, and the tuned page
	 * of entries up to that time is the same page, whose next_cursor is the deep page's.
	 */
	Map findDeepPage(String name, int deepPercent) {
		logIn(name)
		long id = answer("find " + name, send("GET", "/v1/users/" + name)).main_account_id as long
		String history = "/v1/accounts/${id}/history"
		long total = answer("count", send("GET", "${history}/naive?limit=${LIMIT}&page=0")).total as long
		long lastPage = Math.max(0L, total - 1).intdiv(LIMIT)
		long deepPage = (lastPage * deepPercent + 50).intdiv(100)
		String cursor = null
		if (deepPage > 0) {
			def before = answer("page before", send("GET", "${history}/naive?limit=${LIMIT}&page=${deepPage - 1}")).entries
			String to = Instant.parse(before[0].at as String).plusNanos(1000).toString()
			def tuned = answer("tuned page before", send("GET", "${history}?limit=${LIMIT}&to=${to}"))
			if (tuned.entries*.id != before*.id) {
				grinder.logger.warn("{}: the tuned page before the deep page differs from the naive one (entries at the same time)", name)
			}
			cursor = tuned.next_cursor
		}
		[name: name, id: id, deepPage: deepPage, deepCursor: cursor]
	}

	@BeforeThread
	void beforeThread() {
		request = new HTTPRequest()
		statement = statements[grinder.threadNumber % statements.size()]
		logIn(statement.name as String)
		tunedFirst.record(this, "doTunedFirst")
		tunedDeep.record(this, "doTunedDeep")
		naiveFirst.record(this, "doNaiveFirst")
		naiveDeep.record(this, "doNaiveDeep")
		grinder.statistics.delayReports = true
	}

	String history() { "/v1/accounts/${statement.id}/history" }

	void doTunedFirst() { answer("tuned first page", send("GET", "${history()}?limit=${LIMIT}")) }

	void doTunedDeep() {
		String cursor = statement.deepCursor ? "&cursor=" + statement.deepCursor : ""
		answer("tuned deep page", send("GET", "${history()}?limit=${LIMIT}${cursor}"))
	}

	void doNaiveFirst() { answer("naive first page", send("GET", "${history()}/naive?limit=${LIMIT}&page=0")) }

	void doNaiveDeep() { answer("naive deep page", send("GET", "${history()}/naive?limit=${LIMIT}&page=${statement.deepPage}")) }

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
