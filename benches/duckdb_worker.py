"""The DuckDB side of the comparative benchmark (benches/compare.rs).

What a user would do instead of ocs-dash: export OCS's source tables to
Parquet and point DuckDB at them, with the dashboard's charts written as SQL
straight from shared/spec/metrics.md. Nothing here knows about the
snapshot, its rollups or its partitioning.

Two modes:

  python duckdb_worker.py export STAGE_DIR OUT_DIR
      Rewrites every `<table>.parquet` of STAGE_DIR (the OCS source tables,
      exactly the columns the dashboard needs, as the ETL's binary COPY read
      them) with DuckDB's own `COPY ... (FORMAT parquet)` defaults, i.e. the
      files a plain `COPY table TO 'table.parquet'` export would give.

  python duckdb_worker.py serve EXPORT_DIR
      Long-lived worker: one JSON request per stdin line, one JSON answer per
      stdout line. A request names a chart and its resolved filters; the
      answer holds the chart's `data` in the shape of shared/spec/api.md and
      the seconds spent inside DuckDB (execute + fetch of every statement of
      the chart; building the JSON from the fetched rows is not timed).
"""

import datetime as dt
import json
import sys
import time
from fractions import Fraction
from zoneinfo import ZoneInfo

import duckdb

TABLES = [
    "teams_team",
    "django_content_type",
    "experiments_experiment",
    "experiments_participant",
    "channels_experimentchannel",
    "experiments_experimentsession",
    "chat_chat",
    "chat_chatmessage",
    "annotations_tag",
    "annotations_customtaggeditem",
]

PLATFORM_LABELS = {
    "telegram": "Telegram",
    "web": "Web",
    "whatsapp": "WhatsApp",
    "facebook": "Facebook",
    "sureadhere": "SureAdhere",
    "api": "API",
    "slack": "Slack",
    "commcare_connect": "CommCare Connect",
    "evaluations": "Evaluations",
    "embedded_widget": "Chat Widget & API",
    "email": "Email",
}

CATEGORY_LABELS = {
    "": "User Defined",
    "bot_response": "Bot Response",
    "safety_layer_response": "Safety Layer Response",
    "experiment_version": "Experiment Version",
    "response_rating": "Response Rating",
    "error": "Error",
    "media_type": "Media Type",
}

# Counted sessions (cs), those passing the filters (fs), turns of fs inside
# the window (wt) and the active sessions R with their length (r): §2 of
# metrics.md. Parameters: $team, $ws/$we (window instants), $exps, $chans.
PREFIX = """
WITH cs AS (
    SELECT s.id, s.experiment_id, s.participant_id, s.chat_id, s.created_at, s.ended_at,
           COALESCE(s.platform, c.platform, pt.platform) AS platform
    FROM experiments_experimentsession s
    LEFT JOIN channels_experimentchannel c ON c.id = s.experiment_channel_id
    LEFT JOIN experiments_participant pt ON pt.id = s.participant_id
    WHERE s.team_id = $team
      AND s.status <> 'setup'
      AND COALESCE(s.platform, c.platform, pt.platform) IS DISTINCT FROM 'evaluations'
),
fs AS MATERIALIZED (
    SELECT * FROM cs
    WHERE (len($exps::BIGINT[]) = 0 OR experiment_id IN (
               SELECT e.id FROM experiments_experiment e
               WHERE e.team_id = $team AND e.working_version_id IS NULL
                 AND list_contains($exps::BIGINT[], e.id)))
      AND (len($chans::VARCHAR[]) = 0 OR list_contains($chans::VARCHAR[], platform))
),
wt AS MATERIALIZED (
    SELECT m.id, m.message_type, m.created_at,
           fs.id AS session_id, fs.experiment_id, fs.participant_id, fs.platform
    FROM chat_chatmessage m
    JOIN fs ON fs.chat_id = m.chat_id
    WHERE m.message_type IN ('human', 'ai')
      AND m.created_at >= $ws::TIMESTAMPTZ AND m.created_at < $we::TIMESTAMPTZ
),
r AS MATERIALIZED (
    SELECT fs.*,
           CASE WHEN fs.ended_at IS NULL THEN NULL
                ELSE epoch_us(fs.ended_at) - epoch_us(fs.created_at) END AS len_us
    FROM fs
    WHERE fs.id IN (SELECT session_id FROM wt)
)
"""

LISTED_BOTS = """
    SELECT e.id, e.name FROM experiments_experiment e
    WHERE e.team_id = $team AND e.working_version_id IS NULL AND NOT e.is_archived
      AND (len($exps::BIGINT[]) = 0 OR list_contains($exps::BIGINT[], e.id))
"""

OVERVIEW = (
    PREFIX
    + f"""
SELECT
    (SELECT count(*) FROM ({LISTED_BOTS})) AS total_chatbots,
    (SELECT count(DISTINCT experiment_id) FROM r) AS active_chatbots,
    (SELECT count(DISTINCT participant_id) FROM fs) AS total_participants,
    (SELECT count(DISTINCT participant_id) FILTER (WHERE message_type = 'human') FROM wt) AS active_participants,
    (SELECT count(*) FROM r) AS active_sessions,
    (SELECT count(*) FROM fs WHERE created_at >= $ws::TIMESTAMPTZ AND created_at < $we::TIMESTAMPTZ) AS sessions_started,
    (SELECT count(*) FROM r WHERE ended_at IS NOT NULL) AS completed_sessions,
    (SELECT count(*) FILTER (WHERE message_type = 'human') FROM wt) AS human_messages,
    (SELECT count(*) FILTER (WHERE message_type = 'ai') FROM wt) AS ai_messages
"""
)

UNITS = {"daily": "day", "weekly": "week", "monthly": "month"}


def buckets(granularity):
    """(CTE `b(k, b_start)` of every bucket overlapping the window, the key
    expression of an instant `{col}`): local calendar units truncated in the
    zone, or real hours from the window start."""
    unit = UNITS.get(granularity)
    if unit is None:
        cte = """,
b AS (
    SELECT i AS k, $ws::TIMESTAMPTZ + to_hours(i) AS b_start
    FROM range(0, CAST(ceil((epoch_us($we::TIMESTAMPTZ) - epoch_us($ws::TIMESTAMPTZ)) / 3600000000) AS BIGINT)) t(i)
)"""
        key = "(epoch_us({col}) - epoch_us($ws::TIMESTAMPTZ)) // 3600000000"
    else:
        cte = f""",
b AS (
    SELECT l AS k, timezone($tz, l) AS b_start
    FROM range(date_trunc('{unit}', $ws_local::TIMESTAMP), $we_local::TIMESTAMP, INTERVAL 1 {unit}) t(l)
)"""
        key = f"date_trunc('{unit}', timezone($tz, {{col}}))"
    return cte, key


def series_sql(granularity, aggs, cols):
    """A zero-filled time series. `aggs`: (alias, source, time column,
    aggregate expressions) grouped by bucket key; `cols`: output expressions."""
    cte, key = buckets(granularity)
    parts = [PREFIX + cte]
    joins = []
    for alias, source, time_col, exprs, where in aggs:
        parts.append(
            f""",
{alias} AS (
    SELECT {key.format(col=time_col)} AS k, {exprs}
    FROM {source}
    WHERE {where}
    GROUP BY 1
)"""
        )
        joins.append(f"LEFT JOIN {alias} ON {alias}.k = b.k")
    select = ", ".join(cols)
    parts.append(
        f"""
SELECT strftime(timezone($tz, b.b_start), '%Y-%m-%dT%H:%M:%S') AS local,
       (epoch_us(timezone($tz, b.b_start)) - epoch_us(b.b_start)) // 1000000 AS off,
       {select}
FROM b
{" ".join(joins)}
ORDER BY b.b_start"""
    )
    return "".join(parts)


IN_WINDOW = "created_at >= $ws::TIMESTAMPTZ AND created_at < $we::TIMESTAMPTZ"

SERIES = {
    "active-participants": (
        [("ap", "wt", "created_at", "count(DISTINCT participant_id) AS n", "message_type = 'human'")],
        ["COALESCE(ap.n, 0)"],
        ["active_participants"],
    ),
    "session-analytics": (
        [
            (
                "act",
                "wt",
                "created_at",
                "count(DISTINCT session_id) AS sessions, "
                "count(DISTINCT participant_id) FILTER (WHERE message_type = 'human') AS participants",
                "true",
            ),
            ("st", "fs", "created_at", "count(*) AS n", IN_WINDOW),
        ],
        ["COALESCE(act.sessions, 0)", "COALESCE(st.n, 0)", "COALESCE(act.participants, 0)"],
        ["active_sessions", "sessions_started", "active_participants"],
    ),
    "message-volume": (
        [
            (
                "mv",
                "wt",
                "created_at",
                "count(*) FILTER (WHERE message_type = 'human') AS h, "
                "count(*) FILTER (WHERE message_type = 'ai') AS a",
                "true",
            )
        ],
        ["COALESCE(mv.h, 0)", "COALESCE(mv.a, 0)", "COALESCE(mv.h, 0) + COALESCE(mv.a, 0)"],
        ["human_messages", "ai_messages", "total_messages"],
    ),
}

BOT_ORDER = {
    "chatbot_name": "chatbot_name",
    "participants": "participants",
    "sessions": "sessions",
    "messages": "messages",
    "avg_session_duration": "avg_session_duration",
    "completion_rate": "completion_rate",
    "avg_messages_per_session": "avg_messages_per_session",
}


def bot_performance_sql(order_by, order_dir):
    col = BOT_ORDER[order_by]
    direction = {"asc": "ASC", "desc": "DESC"}[order_dir]
    return (
        PREFIX
        + f""",
bots AS ({LISTED_BOTS}),
rs AS (
    SELECT experiment_id, count(DISTINCT participant_id) AS participants, count(*) AS sessions,
           count(ended_at) AS ended, sum(len_us) AS sum_len_us
    FROM r GROUP BY experiment_id
),
ms AS (SELECT experiment_id, count(*) AS messages FROM wt GROUP BY experiment_id),
rows AS (
    SELECT bots.id AS chatbot_id, bots.name AS chatbot_name,
           COALESCE(rs.participants, 0) AS participants,
           COALESCE(rs.sessions, 0) AS sessions,
           COALESCE(ms.messages, 0) AS messages,
           COALESCE(rs.ended, 0) AS ended,
           rs.sum_len_us,
           CASE WHEN COALESCE(rs.ended, 0) = 0 THEN NULL
                ELSE rs.sum_len_us::DOUBLE / (rs.ended * 60000000)::DOUBLE END AS avg_session_duration,
           CASE WHEN COALESCE(rs.sessions, 0) = 0 THEN 0.0
                ELSE rs.ended::DOUBLE / rs.sessions::DOUBLE END AS completion_rate,
           CASE WHEN COALESCE(rs.sessions, 0) = 0 THEN 0.0
                ELSE COALESCE(ms.messages, 0)::DOUBLE / rs.sessions::DOUBLE END AS avg_messages_per_session
    FROM bots
    LEFT JOIN rs ON rs.experiment_id = bots.id
    LEFT JOIN ms ON ms.experiment_id = bots.id
)
SELECT chatbot_id, chatbot_name, participants, sessions, messages, ended, sum_len_us,
       completion_rate, avg_messages_per_session, count(*) OVER () AS total_count
FROM rows
ORDER BY {col} {direction} NULLS LAST, chatbot_id ASC
LIMIT $page_size OFFSET $offset
"""
    )


USER_ENGAGEMENT = (
    PREFIX
    + """,
authors AS (
    SELECT participant_id, count(*) AS total_messages, count(DISTINCT session_id) AS total_sessions,
           max(created_at) AS last_activity
    FROM wt
    WHERE message_type = 'human' AND participant_id IS NOT NULL
    GROUP BY participant_id
),
ranked AS (
    SELECT a.*,
           row_number() OVER (ORDER BY total_messages DESC, participant_id ASC) AS most,
           row_number() OVER (ORDER BY total_messages ASC, participant_id ASC) AS least
    FROM authors a
)
SELECT ranked.participant_id, COALESCE(NULLIF(pt.name, ''), pt.identifier) AS participant_name,
       total_messages, total_sessions,
       strftime(timezone('UTC', last_activity), '%Y-%m-%dT%H:%M:%S.%fZ') AS last_activity,
       most, least, (SELECT count(*) FROM authors) AS total
FROM ranked
LEFT JOIN experiments_participant pt ON pt.id = ranked.participant_id
WHERE most <= $limit OR least <= $limit
"""
)

SESSION_LENGTHS = (
    PREFIX
    + """,
lens AS (SELECT len_us::DOUBLE / 60000000.0::DOUBLE AS v FROM r WHERE ended_at IS NOT NULL),
mm AS (SELECT min(v) AS mn, max(v) AS mx, count(*) AS n,
              quantile_cont(v, [0.5, 0.9, 0.99]) AS q FROM lens),
bins AS (
    SELECT i, mm.mn + i::DOUBLE * ((mm.mx - mm.mn) / 10.0::DOUBLE) AS bin_start,
           CASE WHEN i = 9 THEN mm.mx ELSE mm.mn + (i + 1)::DOUBLE * ((mm.mx - mm.mn) / 10.0::DOUBLE) END AS bin_end
    FROM mm, range(0, 10) t(i)
    WHERE mm.mn < mm.mx
),
counts AS (
    SELECT bins.i, count(*) AS n
    FROM lens JOIN bins ON lens.v >= bins.bin_start AND (lens.v < bins.bin_end OR (bins.i = 9 AND lens.v = bins.bin_end))
    GROUP BY bins.i
)
SELECT mm.mn, mm.mx, mm.n, mm.q,
       (SELECT list({'i': bins.i, 'bin_start': bins.bin_start, 'bin_end': bins.bin_end,
                     'count': COALESCE(counts.n, 0)} ORDER BY bins.i)
        FROM bins LEFT JOIN counts ON counts.i = bins.i) AS bins
FROM mm
"""
)

CHANNEL_BREAKDOWN = (
    PREFIX
    + """,
plats AS (SELECT platform, count(*) AS sessions FROM r GROUP BY platform),
msgs AS (
    SELECT platform,
           count(DISTINCT participant_id) FILTER (WHERE message_type = 'human') AS participants,
           count(*) FILTER (WHERE message_type = 'human') AS h,
           count(*) FILTER (WHERE message_type = 'ai') AS a
    FROM wt GROUP BY platform
),
totals AS (
    SELECT (SELECT count(*) FROM r) AS sessions,
           (SELECT count(DISTINCT participant_id) FILTER (WHERE message_type = 'human') FROM wt) AS participants,
           (SELECT count(*) FROM wt) AS messages
)
SELECT plats.platform, plats.sessions, COALESCE(msgs.participants, 0), COALESCE(msgs.h, 0), COALESCE(msgs.a, 0),
       plats.sessions::DOUBLE / totals.sessions::DOUBLE AS share,
       totals.sessions, totals.participants, totals.messages
FROM totals
LEFT JOIN plats ON true
LEFT JOIN msgs ON msgs.platform IS NOT DISTINCT FROM plats.platform
ORDER BY plats.sessions DESC, plats.platform ASC NULLS LAST
"""
)

TAG_ANALYTICS = (
    PREFIX
    + """,
tg AS (
    SELECT id, name, category FROM annotations_tag
    WHERE team_id = $team AND category <> 'experiment_version'
),
items AS (
    SELECT i.tag_id, i.content_type_id, i.object_id
    FROM annotations_customtaggeditem i
    WHERE i.team_id = $team AND i.tag_id IN (SELECT id FROM tg)
),
msg_tagged AS MATERIALIZED (
    SELECT DISTINCT items.tag_id, wt.id AS message_id
    FROM items JOIN wt ON wt.id = items.object_id
    WHERE items.content_type_id =
          (SELECT id FROM django_content_type WHERE app_label = 'chat' AND model = 'chatmessage')
),
sess_tagged AS (
    SELECT DISTINCT items.tag_id, r.id AS session_id
    FROM items JOIN r ON r.chat_id = items.object_id
    WHERE items.content_type_id =
          (SELECT id FROM django_content_type WHERE app_label = 'chat' AND model = 'chat')
),
n AS (
    SELECT 'message' AS kind, tag_id, count(*) AS n FROM msg_tagged GROUP BY tag_id
    UNION ALL
    SELECT 'session' AS kind, tag_id, count(*) AS n FROM sess_tagged GROUP BY tag_id
)
SELECT n.kind, tg.category, tg.id, tg.name, n.n FROM n JOIN tg ON tg.id = n.tag_id
UNION ALL
SELECT 'total', NULL, NULL, NULL, count(DISTINCT message_id) FROM msg_tagged
"""
)


def bucket_name(local, off):
    sign = "-" if off < 0 else "+"
    off = abs(off)
    return f"{local}{sign}{off // 3600:02d}:{off % 3600 // 60:02d}"


def ratio(a, b):
    return 0.0 if b == 0 else a / b


class Worker:
    def __init__(self, export_dir):
        self.con = duckdb.connect()
        for setting in ("SET enable_object_cache = true", "SET parquet_metadata_cache = true"):
            try:
                self.con.execute(setting)
            except duckdb.Error:
                pass
        for t in TABLES:
            self.con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{export_dir}/{t}.parquet')")
        self.seconds = 0.0

    def run(self, sql, params):
        started = time.perf_counter()
        rows = self.con.execute(sql, params).fetchall()
        self.seconds += time.perf_counter() - started
        return rows

    def chart(self, req):
        tz = ZoneInfo(req["timezone"])
        start = dt.date.fromisoformat(req["start_date"])
        end = dt.date.fromisoformat(req["end_date"]) + dt.timedelta(days=1)
        ws_local = dt.datetime.combine(start, dt.time())
        we_local = dt.datetime.combine(end, dt.time())
        params = {
            "team": req["team"],
            "ws": ws_local.replace(tzinfo=tz).astimezone(dt.timezone.utc),
            "we": we_local.replace(tzinfo=tz).astimezone(dt.timezone.utc),
            "exps": req.get("experiments", []),
            "chans": req.get("channels", []),
        }
        chart = req["chart"]
        granularity = req.get("granularity", "daily")
        self.seconds = 0.0
        if chart == "overview":
            data = self.overview(params)
        elif chart in SERIES:
            aggs, cols, names = SERIES[chart]
            sql = series_sql(granularity, aggs, [f"{c} AS {n}" for c, n in zip(cols, names)])
            params = dict(params, tz=req["timezone"])
            if granularity != "hourly":
                params.update(ws_local=ws_local, we_local=we_local)
            rows = self.run(sql, self.used(sql, params))
            data = [
                dict([("bucket", bucket_name(r[0], r[1]))] + [(n, r[2 + i]) for i, n in enumerate(names)])
                for r in rows
            ]
        elif chart == "bot-performance":
            data = self.bot_performance(params, req)
        elif chart == "user-engagement":
            data = self.user_engagement(params, req)
        elif chart == "channel-breakdown":
            data = self.channel_breakdown(params)
        elif chart == "tag-analytics":
            data = self.tag_analytics(params)
        else:
            raise ValueError(f"unknown chart {chart!r}")
        return {"data": data, "seconds": self.seconds}

    @staticmethod
    def used(sql, params):
        """DuckDB refuses parameters the statement does not name."""
        return {k: v for k, v in params.items() if f"${k}" in sql}

    def overview(self, params):
        (row,) = self.run(OVERVIEW, self.used(OVERVIEW, params))
        (bots, active_bots, total_p, active_p, active_s, started, completed, human, ai) = row
        return {
            "total_chatbots": bots,
            "active_chatbots": active_bots,
            "total_participants": total_p,
            "active_participants": active_p,
            "active_sessions": active_s,
            "sessions_started": started,
            "completed_sessions": completed,
            "completion_rate": ratio(completed, active_s),
            "human_messages": human,
            "ai_messages": ai,
            "total_messages": human + ai,
            "avg_messages_per_session": ratio(human + ai, active_s),
            "avg_sessions_per_participant": ratio(active_s, active_p),
        }

    def bot_performance(self, params, req):
        page, page_size = req.get("page", 1), req.get("page_size", 10)
        sql = bot_performance_sql(req.get("order_by", "messages"), req.get("order_dir", "desc"))
        params = dict(params, page_size=page_size, offset=(page - 1) * page_size)
        rows = self.run(sql, self.used(sql, params))
        total = rows[0][9] if rows else None
        if total is None:
            # A page past the end: the count comes from the page that exists.
            count_params = dict(params, page_size=1, offset=0)
            first = self.run(sql, self.used(sql, count_params))
            total = first[0][9] if first else 0
        results = [
            {
                "chatbot_id": r[0],
                "chatbot_name": r[1],
                "participants": r[2],
                "sessions": r[3],
                "messages": r[4],
                # The exact mean of integer microseconds, rounded once.
                "avg_session_duration": None if r[5] == 0 else float(Fraction(int(r[6]), r[5] * 60_000_000)),
                "completion_rate": r[7],
                "avg_messages_per_session": r[8],
            }
            for r in rows
        ]
        return {
            "results": results,
            "total_count": total,
            "page": page,
            "page_size": page_size,
            "total_pages": 0 if total == 0 else (total + page_size - 1) // page_size,
        }

    def user_engagement(self, params, req):
        limit = req.get("limit", 10)
        rows = self.run(USER_ENGAGEMENT, self.used(USER_ENGAGEMENT, dict(params, limit=limit)))
        (mn, mx, n, q, bins) = self.run(SESSION_LENGTHS, self.used(SESSION_LENGTHS, params))[0]

        def person(r):
            return {
                "participant_id": r[0],
                "participant_name": r[1],
                "total_messages": r[2],
                "total_sessions": r[3],
                "last_activity": r[4],
            }

        most = [person(r) for r in sorted((r for r in rows if r[5] <= limit), key=lambda r: r[5])]
        least = [person(r) for r in sorted((r for r in rows if r[6] <= limit), key=lambda r: r[6])]
        if n == 0:
            dist = []
        elif mn == mx:
            dist = [{"bin_start": mn, "bin_end": mx, "count": n}]
        else:
            dist = [{"bin_start": b["bin_start"], "bin_end": b["bin_end"], "count": b["count"]} for b in bins]
        q = q or [None, None, None]
        return {
            "most_active": most,
            "least_active": least,
            "total_participants": rows[0][7] if rows else 0,
            "session_length_distribution": dist,
            "session_length_percentiles": {"p50": q[0], "p90": q[1], "p99": q[2]},
        }

    def channel_breakdown(self, params):
        rows = self.run(CHANNEL_BREAKDOWN, self.used(CHANNEL_BREAKDOWN, params))
        platforms = [
            {
                "platform": r[0],
                "label": None if r[0] is None else PLATFORM_LABELS.get(r[0], r[0]),
                "sessions": r[1],
                "participants": r[2],
                "human_messages": r[3],
                "ai_messages": r[4],
                "session_share": r[5],
            }
            for r in rows
            if r[1] is not None
        ]
        _, _, _, _, _, _, sessions, participants, messages = rows[0]
        return {
            "platforms": platforms,
            "totals": {"sessions": sessions, "participants": participants, "messages": messages},
        }

    def tag_analytics(self, params):
        rows = self.run(TAG_ANALYTICS, self.used(TAG_ANALYTICS, params))
        total = next(r[4] for r in rows if r[0] == "total")

        def grouped(kind):
            tags = [r for r in rows if r[0] == kind and r[4] >= 1]
            cats = {}
            for _, category, tag_id, name, count in tags:
                cats.setdefault(category, []).append({"tag_id": tag_id, "name": name, "count": count})
            out = []
            for category in sorted(cats, key=lambda c: (CATEGORY_LABELS.get(c, c), c)):
                ts = sorted(cats[category], key=lambda t: (-t["count"], t["name"], t["tag_id"]))
                out.append({"category": category, "label": CATEGORY_LABELS.get(category, category), "tags": ts})
            return out

        return {
            "message_tags": grouped("message"),
            "session_tags": grouped("session"),
            "total_tagged_messages": total,
        }


def export(stage_dir, out_dir):
    con = duckdb.connect()
    for t in TABLES:
        con.execute(f"COPY (SELECT * FROM read_parquet('{stage_dir}/{t}.parquet')) TO '{out_dir}/{t}.parquet' (FORMAT parquet)")


def serve(export_dir):
    worker = Worker(export_dir)
    print(json.dumps({"ready": True, "duckdb": duckdb.__version__}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            answer = worker.chart(json.loads(line))
        except Exception as e:  # reported to the harness, which fails loudly
            answer = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "export":
        export(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        sys.exit("usage: duckdb_worker.py export STAGE_DIR OUT_DIR | serve EXPORT_DIR")
