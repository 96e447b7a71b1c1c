with

source as (

    select * from {{ source('evo', 'session_log') }}

),

renamed as (

    select
        ----------  ids
        session_id,
        cast(log_index as integer) as log_index,

        ----------  log entry
        cast(logged_at as timestamp with time zone) as logged_at,
        message,

        ----------  lineage
        cast(partition_date as date) as partition_date,
        cast(synced_at as timestamp with time zone) as synced_at

    from source

)

select * from renamed
