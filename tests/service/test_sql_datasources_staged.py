"""RDS and Redshift datasources against the MariaDB and PostgreSQL servers of the machine: what they
stage (a million rows, each server's numbers, bits, dates and times, and column names) and the schema
they find or are given.

The session makes its own database on each server (and a MariaDB user with a password, since the API
demands one), fills it with a million rows, and drops everything afterwards (tests/service/conftest.py).
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
from sql_helpers import (
    Databases,
    attribute_types,
    check_staged_datasource,
    failed,
    from_rds,
    from_redshift,
    staged_rows,
)

from emrml.service.app import EmrML


def test_a_million_rows_from_mariadb(sql_app: EmrML, databases: Databases, staging: Path) -> None:
    result = from_rds(sql_app, databases, staging, "rds-million", "SELECT * FROM customers ORDER BY id")
    check_staged_datasource(sql_app, result, staging)
    metadata = sql_app.call("GetDataSource", {"DataSourceId": "rds-million", "Verbose": True})["RDSMetadata"]
    assert metadata["DatabaseUserName"] == databases.mariadb_user
    assert metadata["SelectSqlQuery"] == "SELECT * FROM customers ORDER BY id"


def test_a_million_rows_from_postgresql(sql_app: EmrML, databases: Databases, staging: Path) -> None:
    result = from_redshift(
        sql_app, databases, staging, "redshift-million", "SELECT * FROM customers ORDER BY id"
    )
    check_staged_datasource(sql_app, result, staging)


def test_a_given_schema_names_the_target(sql_app: EmrML, databases: Databases, staging: Path) -> None:
    schema = {
        "version": "1.0",
        "targetAttributeName": "churned",
        "dataFormat": "CSV",
        "dataFileContainsHeader": True,
        "attributes": [
            {"attributeName": "age", "attributeType": "NUMERIC"},
            {"attributeName": "colour", "attributeType": "CATEGORICAL"},
            {"attributeName": "churned", "attributeType": "BINARY"},
        ],
    }
    query = "SELECT age, colour, churned FROM customers WHERE id <= 1000"
    for result in (
        from_rds(sql_app, databases, staging, "rds-schema", query, DataSchema=json.dumps(schema)),
        from_redshift(sql_app, databases, staging, "redshift-schema", query, DataSchema=json.dumps(schema)),
    ):
        assert result["Status"] == "COMPLETED" and result["TotalRecordCount"] == 1000, result
        verbose = sql_app.call("GetDataSource", {"DataSourceId": result["DataSourceId"], "Verbose": True})
        assert json.loads(verbose["DataSourceSchema"])["targetAttributeName"] == "churned"


def test_a_mysql_bit_column_converted_as_the_refusal_says_is_binary(
    sql_app: EmrML, databases: Databases, staging: Path
) -> None:
    query = "SELECT id, CAST(active AS UNSIGNED) AS active FROM flags ORDER BY id"
    result = from_rds(sql_app, databases, staging, "rds-flags", query)
    assert result["Status"] == "COMPLETED", result
    with gzip.open(staging / "rds-flags.csv.gz", "rt") as text:
        assert text.read().split() == ["id,active", "1,1", "2,0", "3,1", "4,"]
    verbose = sql_app.call("GetDataSource", {"DataSourceId": "rds-flags", "Verbose": True})
    types = {
        a["attributeName"]: a["attributeType"] for a in json.loads(verbose["DataSourceSchema"])["attributes"]
    }
    assert types == {"id": "NUMERIC", "active": "BINARY"}


def test_mysql_decimals_are_staged_as_their_own_digits(
    sql_app: EmrML, databases: Databases, staging: Path
) -> None:
    # The MySQL driver reads every DECIMAL with 10 digits after the point: 12.50 was staged as
    # 12.5000000000, and a value under 10^-6 as 1E-7.
    query = (
        "SELECT id, CAST(income AS DECIMAL(12, 2)) AS income, CAST(id - 3 AS DECIMAL(10, 0)) AS shifted, "
        "CAST(id / 10000000 AS DECIMAL(20, 10)) AS tiny, CAST(-income / 1000 AS DECIMAL(12, 4)) AS loss "
        "FROM customers WHERE id <= 4 ORDER BY id"
    )
    result = from_rds(sql_app, databases, staging, "rds-decimals", query)
    assert result["Status"] == "COMPLETED", result
    assert staged_rows(result) == [
        ["id", "income", "shifted", "tiny", "loss"],
        ["1", "462.5", "-2", "0.0000001", "-0.4625"],
        ["2", "925", "-1", "0.0000002", "-0.925"],
        ["3", "1387.5", "0", "0.0000003", "-1.3875"],
        ["4", "1850", "1", "0.0000004", "-1.85"],
    ]
    assert set(attribute_types(sql_app, "rds-decimals").values()) == {"NUMERIC"}
    statistics = sql_app.call("GetDataSourceStatistics", {"DataSourceId": "rds-decimals"})["Statistics"]
    assert all(a["invalidCount"] == 0 for a in statistics["attributes"])


def test_a_mysql_decimal_with_more_digits_than_the_driver_reads_is_refused(
    sql_app: EmrML, databases: Databases, staging: Path
) -> None:
    # DECIMAL(38,20)'s 0.12345678901234567890 was staged as 0.1234567890, the rest rounded off in silence.
    value = "CAST('0.12345678901234567890' AS DECIMAL(38, 20))"
    result = from_rds(sql_app, databases, staging, "rds-scale", f"SELECT id, {value} AS share FROM customers")
    assert re.search(
        r"column 'share' is a DECIMAL with 20 digits after the decimal point; the MySQL driver reads 10 "
        r"and would round off the rest: .*CAST\(`share` AS DOUBLE\).* or ROUND\(`share`, 10\)$",
        failed(sql_app, result, staging),
    )
    # A query that cannot be read as a subquery has its digits counted as written, and is refused alike.
    query = f"SELECT id, {value} AS share FROM customers; -- shares"
    result = from_rds(sql_app, databases, staging, "rds-scale-unknown", query)
    assert re.search(
        r"column 'share' is a DECIMAL with 20 digits after the decimal point",
        failed(sql_app, result, staging),
    )
    # Rounded as the message offers, by the query's own choice.
    query = f"SELECT id, ROUND({value}, 10) AS share FROM customers WHERE id = 1"
    rounded = from_rds(sql_app, databases, staging, "rds-scale-rounded", query)
    assert staged_rows(rounded) == [["id", "share"], ["1", "0.123456789"]]


def test_postgresql_numeric_columns_are_numeric(sql_app: EmrML, databases: Databases, staging: Path) -> None:
    # NUMERIC is what PostgreSQL gives decimal columns, decimal literals, AVG and SUM of integers: the driver
    # reads it as an opaque extension type, which every such query used to fail as "no Amazon ML type".
    query = (
        "SELECT age, income::numeric(12, 2) AS income, 1.5 AS ratio, churned FROM customers "
        "WHERE id <= 100 ORDER BY id"
    )
    result = from_redshift(sql_app, databases, staging, "redshift-numeric", query)
    assert result["Status"] == "COMPLETED", result
    assert attribute_types(sql_app, "redshift-numeric") == {
        "age": "NUMERIC",
        "income": "NUMERIC",
        "ratio": "NUMERIC",
        "churned": "BINARY",
    }
    rows = staged_rows(result)
    assert rows[0] == ["age", "income", "ratio", "churned"]
    assert rows[1][:3] == ["19", "462.50", "1.5"]
    statistics = sql_app.call("GetDataSourceStatistics", {"DataSourceId": "redshift-numeric"})["Statistics"]
    income = next(a for a in statistics["attributes"] if a["name"] == "income")
    assert income["invalidCount"] == 0
    assert income["max"] == max(((n * 37) % 1000) * 12.5 for n in range(1, 101))
    # And a given schema reads them too: a model trains on a NUMERIC column.
    schema = {
        "version": "1.0",
        "targetAttributeName": "churned",
        "dataFormat": "CSV",
        "dataFileContainsHeader": True,
        "attributes": [
            {"attributeName": "income", "attributeType": "NUMERIC"},
            {"attributeName": "churned", "attributeType": "BINARY"},
        ],
    }
    given = from_redshift(
        sql_app,
        databases,
        staging,
        "redshift-numeric-schema",
        "SELECT SUM(age) AS income, bool_or(churned) AS churned FROM customers WHERE id <= 100 GROUP BY age",
        DataSchema=json.dumps(schema),
    )
    assert given["Status"] == "COMPLETED" and given["TotalRecordCount"] == 60, given


def test_postgresql_special_dates_and_times_are_spelled_as_postgresql_does(
    sql_app: EmrML, databases: Databases, staging: Path
) -> None:
    # The driver reads 'infinity' as an overflowed number: pyarrow spelled it '<value out of range: ...>'
    # or as a date in the year -28134, and the time 24:00 as '<value out of range: 86400000000>'.
    query = """
        SELECT id,
               CASE id WHEN 1 THEN 'infinity'::timestamp WHEN 2 THEN '-infinity'::timestamp
                       ELSE '2024-01-02 03:04:05' END AS seen,
               CASE id WHEN 1 THEN '-infinity'::timestamptz WHEN 2 THEN 'infinity'::timestamptz
                       ELSE '2024-01-02 03:04:05+00' END AS seen_utc,
               CASE id WHEN 1 THEN 'infinity'::date WHEN 2 THEN '-infinity'::date
                       ELSE '2024-01-02' END AS day,
               CASE id WHEN 1 THEN '24:00'::time ELSE '23:59:59.999999'::time END AS closing
        FROM customers WHERE id <= 3 ORDER BY id
    """
    result = from_redshift(sql_app, databases, staging, "redshift-infinity", query)
    assert result["Status"] == "COMPLETED", result
    assert staged_rows(result)[1:] == [
        ["1", "infinity", "-infinity", "infinity", "24:00:00.000000"],
        ["2", "-infinity", "infinity", "-infinity", "23:59:59.999999"],
        ["3", "2024-01-02 03:04:05.000000", "2024-01-02 03:04:05.000000Z", "2024-01-02", "23:59:59.999999"],
    ]


@pytest.mark.parametrize(
    "query",
    [
        "SELECT age, colour FROM customers WHERE id <= 10 -- the first ten",
        "SELECT age, colour FROM customers WHERE id <= 10;\n",
        "SELECT age, colour\nFROM customers\nWHERE id <= 10 ;  \n\n",
    ],
)
def test_postgresql_queries_may_end_in_a_comment_or_a_semicolon(
    sql_app: EmrML, databases: Databases, staging: Path, query: str
) -> None:
    # The driver runs COPY (<query>) TO STDOUT: a last line's comment hid the closing parenthesis, and a
    # semicolon followed by a newline was a syntax error.
    for result in (
        from_redshift(sql_app, databases, staging, "redshift-ending", query),
        from_rds(sql_app, databases, staging, "rds-ending", query),
    ):
        assert result["Status"] == "COMPLETED" and result["TotalRecordCount"] == 10, result


def test_column_names_that_need_quoting_or_trimming_make_a_datasource(
    sql_app: EmrML, databases: Databases, staging: Path
) -> None:
    # A name with blanks around it was written to the staged header as is, and the header check, which
    # trims names as for any CSV file, then failed the datasource ("column 3 is 'e' in the header but ' e '
    # in the schema"), telling to fix a schema the user never gave.
    query = (
        'SELECT age AS "a,b", age AS "c""d", age AS " e ", age AS "f\ng", churned '
        "FROM customers WHERE id <= 5"
    )
    result = from_redshift(sql_app, databases, staging, "redshift-names", query)
    assert result["Status"] == "COMPLETED" and result["TotalRecordCount"] == 5, result
    assert list(attribute_types(sql_app, "redshift-names")) == ["a,b", 'c"d', "e", "f\ng", "churned"]
